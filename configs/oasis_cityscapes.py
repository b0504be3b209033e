"""OASIS on Cityscapes (Sushko et al. 2021): boschresearch/OASIS's settings for --dataset_mode
cityscapes (config.py, its Cityscapes defaults, scripts/train_cityscapes.sh).

Images and label maps resized to 512x256 (bicubic and nearest), flipped, no crop, no instance maps;
the 35 labelIds one-hot (OASIS's semantic_nc: 34 + the don't-care id 0). G: SPADE blocks as OASIS
has them (6 blocks, channels_G 64, 5 upsamplings from 16x8), 3D noise of 64 channels, spectral
norm, parameter-free batch norm in SPADE; D: OASIS's U-Net (6 blocks down and up). Losses: the
(N+1)-class cross-entropy with class balancing (id 0 weighs 0) and LabelMix, no VGG term. Adam
with betas (0, 0.999), a constant lr for 200 epochs, batch 20, and a moving average of G's
weights for synthesis and evaluation.

OASIS's config.py sets for Cityscapes lr_g 4e-4 (its general default is 1e-4), lambda_labelmix 5
(10 elsewhere) and EMA_decay 0.999 (0.9999 elsewhere): those are used here, as its released
Cityscapes model was trained with them.

    pix2pixhd-jax train --config configs/oasis_cityscapes.py --workdir runs/oasis_cityscapes \\
        --config.data.dataroot=/data/cityscapes
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "oasis_cityscapes"
    data = config.data
    data.dataset_format = "cityscapes"
    data.dataroot = "./datasets/cityscapes"
    data.label_nc = 35
    data.use_instance = False
    data.resize_or_crop = "scale_width"  # width 512, height 256
    data.load_size = 512
    data.fine_size = 512

    model = config.model
    model.netG = "spade"
    model.spade_arch = "oasis"
    model.ngf = 64
    model.num_res_blocks = 6
    model.z_dim = 64
    model.spectral_norm = True
    model.param_free_norm = "batch"
    model.spade_kernel_size = 3
    model.spade_hidden = 128
    model.netD = "oasis"
    model.ndf = 64  # OASIS's D: 128, 128, 256, 256, 512, 512 channels down, 64 at the top

    loss = config.loss
    loss.no_vgg_loss = True
    loss.no_ganFeat_loss = True
    loss.lambda_l1 = 0.0
    loss.no_balancing_inloss = False
    loss.contain_dontcare_label = True
    loss.lambda_labelmix = 5.0

    train = config.train
    train.batch_size = 20
    train.lr = 4e-4  # G
    train.lr_D = 4e-4
    train.beta1 = 0.0
    train.beta2 = 0.999
    train.niter = 200  # epochs at a constant lr (OASIS's num_epochs; no decay)
    train.niter_decay = 0
    train.ema_decay = 0.999
    return config
