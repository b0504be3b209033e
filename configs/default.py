"""Every default of the PyTorch reference (options/*.py), the 512p Cityscapes stage.

Names follow the reference's options so its scripts translate one to one;
groups: data, model, loss, train. Booleans that the reference spells as
`--no_x` keep that spelling here (no_flip, no_lsgan, ...) except
`data.use_instance`, the reference's `not no_instance`.
"""

import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "label2city"
    config.seed = 0

    data = config.data = ml_collections.ConfigDict()
    data.dataset_format = "aligned"  # aligned | cityscapes | ade20k | ab | tfds
    data.dataroot = "./datasets/cityscapes/"
    data.tfds_name = ""  # e.g. 'cityscapes_instances' or 'synthetic_scenes/512x256' when dataset_format='tfds'
    data.tfds_data_dir = ""  # TFDS's data_dir; '' means TFDS's default
    data.label_nc = 35  # Cityscapes labelIds 0..33 plus one spare; 0 = RGB label images
    data.input_nc = 3  # channels of RGB label images when label_nc == 0
    data.output_nc = 3  # photo channels: 3 (RGB) or 1 (grayscale, depth, infrared, medical)
    data.image_bit_depth = 8  # 8, or 16 (one-channel 16-bit photos keep their 16 bits)
    data.unknown_label = -1  # K >= 0: label ids >= label_nc become class K (e.g. 255 'ignore'); -1: an error
    data.use_instance = True  # reference: not --no_instance
    data.resize_or_crop = "scale_width"
    data.load_size = 1024
    data.fine_size = 512
    data.no_flip = False
    data.check_names = True  # label/inst/photo file names must name the same scene
    data.ab_direction = "AtoB"  # dataset_format='ab': which half is the input
    data.num_parallel_calls = -1  # -1 = tf.data.AUTOTUNE
    data.prefetch = 2  # host batches prepared ahead
    data.device_prefetch = 2  # batches copied to the devices ahead of the step that reads them (0: when used)
    data.tfds_shuffle_buffer = 256  # dataset_format='tfds' only: sequential reads + a shuffle buffer
    data.max_dataset_size = -1  # -1 = all
    # A folder written by `pix2pixhd-jax prepare-data` for this config (its fixed resize done once):
    # training reads it instead of the dataset's files. "" = read the dataset's files.
    data.prepared_dir = ""

    model = config.model = ml_collections.ConfigDict()
    model.netG = "global"  # global | local | unet_256 | unet_128 | spade (SPADE's and OASIS's, below)
    model.ngf = 64
    model.n_downsample_global = 4
    model.n_blocks_global = 9
    model.n_local_enhancers = 1
    model.n_blocks_local = 3
    model.norm = "instance"  # instance | batch
    model.use_dropout = False
    model.ndf = 64
    model.n_layers_D = 3
    model.num_D = 2
    model.netD = "multiscale"  # multiscale (pix2pixHD, padding 2) | patch (pix2pix, padding 1) | oasis (below)
    # Feature encoder (paper sec. 3.4).
    model.instance_feat = False
    model.label_feat = False
    model.feat_num = 3
    model.nef = 16
    model.n_downsample_E = 4
    # E's normalisation; "" = model.norm, as in the reference (one --norm for G, D and E).
    # "batch" keeps each region's absolute colour, which E's instance norms take away
    # (experiments/README.md, "Feature embedding"): an extension, not in the reference.
    model.norm_E = ""
    model.n_clusters = 10
    model.load_features = False  # the reference's precomputed-feature recipe: refused when true (not supported)
    # SPADE and OASIS (models/spade_generator.py, models/oasis_discriminator.py; configs/oasis_*.py).
    # netG=spade: SPADE residual blocks from the label map (ngf: OASIS's channels_G, SPADE's ngf).
    model.spade_arch = "oasis"  # oasis: OASIS's num_res_blocks blocks | spade: SPADE's head, middle and up blocks
    model.num_res_blocks = 6  # OASIS's G (6 blocks, 5 upsamplings) and its U-Net D (6 down, 6 up)
    model.num_upsampling_layers = "normal"  # spade_arch=spade: normal (5) | more (6, SPADE's Cityscapes) | most (7)
    model.z_dim = 64  # OASIS's 3D noise: channels of noise joined to the label map; 0 = none (SPADE)
    model.spectral_norm = True  # the blocks' convs of G and of netD=oasis (OASIS's --no_spectral_norm: false)
    model.param_free_norm = "batch"  # SPADE's norm before its modulation: batch (the references' syncbatch) | instance
    model.spade_kernel_size = 3  # SPADE's convs (spade_ks)
    model.spade_hidden = 128  # SPADE's shared conv width (fixed at 128 in both references)

    loss = config.loss = ml_collections.ConfigDict()
    loss.no_lsgan = False  # True = vanilla (BCE) GAN loss
    loss.no_ganFeat_loss = False
    loss.no_vgg_loss = False
    loss.lambda_feat = 10.0
    loss.lambda_l1 = 0.0  # pix2pix baseline: 100
    loss.vgg_weights = ""  # path to VGG19 weights (torchvision .pth, converted .npz, or Keras .h5)
    # netD=oasis (training/oasis_losses.py): the (N+1)-class segmentation loss replaces the GAN and
    # feature-matching terms.
    loss.no_balancing_inloss = False  # OASIS: true = no class-balancing weights in the real term
    loss.contain_dontcare_label = True  # OASIS: label id 0 is 'unlabeled' and weighs 0 in the real term
    loss.lambda_labelmix = 10.0  # OASIS's LabelMix consistency weight in D's loss; 0 = no LabelMix

    train = config.train = ml_collections.ConfigDict()
    train.batch_size = 1  # global batch, over all devices and hosts
    train.niter = 100  # epochs at the starting lr
    train.niter_decay = 100  # epochs of linear decay to 0
    train.niter_fix_global = 0  # epochs with the global generator frozen (local stage)
    train.lr_decay_per_step = False  # reference: per epoch
    train.lr = 2e-4
    # OASIS's step (netD=oasis) only: D's own lr (-1 = train.lr; OASIS: G 1e-4, D 4e-4), and a moving
    # average of G's weights that synthesis and evaluation use (OASIS 0.9999; 0 = none).
    train.lr_D = -1.0
    train.ema_decay = 0.0
    # Passes of the averaged G in training mode over the coming training batches before every
    # scheduled save and evaluation: they refresh its batch-norm statistics, which the average of
    # G's statistics does not give (OASIS runs 50).
    train.ema_stats_passes = 50
    train.grad_clip_norm = 0.0  # > 0: each network's gradient clipped to this global norm before Adam (0 = none)
    train.beta1 = 0.5
    train.beta2 = 0.999
    train.pool_size = 0
    train.init_from = ""  # a global-stage workdir to start the local stage from
    train.dtype = "float32"  # compute dtype: float32 | bfloat16
    # What the backward pass recomputes instead of keeping (models/layers.py REMAT_MODES): none,
    # blocks (G's residual blocks), full (every layer of G, E, D and VGG19), or a
    # jax.checkpoint_policies name (dots_saveable: every layer keeps its conv output).
    train.remat = "none"
    train.shard_params = False
    train.display_freq = 100
    train.print_freq = 100
    train.save_latest_freq = 1000
    train.save_epoch_freq = 10
    train.keep_checkpoints = 3
    train.max_steps = -1  # stop early at this global step (-1: the whole niter + niter_decay schedule)
    # Evaluation during training (evaluate's scores to TensorBoard and metrics.jsonl as eval/*):
    train.eval_every = 0  # steps; 0: off
    train.eval_segmenter = ""  # the judge: a train-segmenter workdir for this dataset
    train.eval_split = "test"
    train.eval_dataroot = ""  # the held-out data's root; "" = data.dataroot

    # The evaluation segmenter (`train-segmenter`): reads the data group, its own settings here.
    seg = config.segmenter = ml_collections.ConfigDict()
    seg.width = 32  # channels after the stem; doubled at each of `depth` stride-2 stages
    seg.depth = 3
    seg.steps = 1500
    seg.batch_size = 8
    seg.lr = 1e-3  # Adam, cosine decay to 0 over `steps`
    seg.save_freq = 500
    seg.class_weighting = "none"  # none | inverse_sqrt_frequency | median_frequency (rare classes weigh more)
    return config
