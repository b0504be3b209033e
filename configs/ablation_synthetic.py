"""The paper's comparisons on the synthetic street scenes: `configs/ablation_synthetic.py:VARIANT`.

Every variant trains the demo's budget (200 scenes at 256x128, random 128x128 crops,
batch 4, lr 2e-4, 600 steps) so they can be held against each other:

  pix2pixhd     the demo config: global G (ngf 16), 2-scale D, LSGAN + feature matching, instance
                boundaries, and L1 (weight 10) standing in for the VGG term (no VGG19 weights ship)
  pix2pixhd_gan_fm   the paper's losses without VGG and without the L1 stand-in
  pix2pixhd_vgg the paper's losses with VGG19; needs loss.vgg_weights=FILE (not run here)
  no_instance   pix2pixhd without the instance boundary map
  single_d      pix2pixhd with a single-scale discriminator (num_D 1)
  pix2pix       the pix2pix baseline: U-Net 128 G with dropout, 70x70 PatchGAN, batch norm,
                BCE GAN + 100 L1, no instance maps; ngf 16 / ndf 16 to keep the capacity near
                the pix2pixHD variants'
  segmenter     the judge: the evaluation segmenter's data and training settings (train-segmenter);
                experiments/judge.py measures what each of its settings buys
  segmenter_small  the first comparison's smaller judge (width 16, 800 steps, no class weights)
"""

from configs import synthetic_demo

VARIANTS = ("pix2pixhd", "pix2pixhd_gan_fm", "pix2pixhd_vgg", "no_instance", "single_d", "pix2pix", "segmenter",
            "segmenter_small")


def get_config(variant="pix2pixhd"):
    if variant not in VARIANTS:
        raise ValueError(f"configs/ablation_synthetic.py:{variant}: not one of {', '.join(VARIANTS)}")
    config = synthetic_demo.get_config()
    config.name = f"ablation_{variant}"
    config.data.dataroot = "demo/synthetic"
    model, loss = config.model, config.loss
    if variant == "pix2pixhd_gan_fm":
        loss.lambda_l1 = 0.0
    elif variant == "pix2pixhd_vgg":
        loss.lambda_l1 = 0.0
        loss.no_vgg_loss = False
        loss.vgg_weights = ""  # the user's VGG19 file: --config.loss.vgg_weights=vgg19.npz
    elif variant == "no_instance":
        config.data.use_instance = False
    elif variant == "single_d":
        model.num_D = 1
    elif variant == "pix2pix":
        config.data.use_instance = False
        model.netG = "unet_128"
        model.ngf = 16
        model.netD = "patch"
        model.ndf = 16
        model.num_D = 1
        model.norm = "batch"
        model.use_dropout = True
        loss.no_lsgan = True
        loss.no_ganFeat_loss = True
        loss.lambda_l1 = 100.0
    elif variant == "segmenter_small":
        # The synthetic classes are told apart by colour and shape; ~10 minutes on 2 CPU cores.
        config.segmenter.width = 16
        config.segmenter.batch_size = 4
        config.segmenter.steps = 800
        config.segmenter.lr = 2e-3
        config.segmenter.save_freq = 200
    elif variant == "segmenter":
        # Poles, lights, signs and people are a few pixels wide at 256x128: rare pixels weigh more
        # (median frequency), twice the width, and longer training (experiments/judge.py).
        config.segmenter.width = 32
        config.segmenter.batch_size = 4
        config.segmenter.steps = 3000
        config.segmenter.lr = 2e-3
        config.segmenter.save_freq = 250
        config.segmenter.class_weighting = "median_frequency"
    return config
