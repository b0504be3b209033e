"""The pix2pix baseline the paper compares against (Isola et al. 2017).

U-Net 256 generator with dropout as its noise, a 70x70 PatchGAN (padding 1),
batch norm, vanilla GAN (BCE) + 100 * L1, no instance maps, no feature
matching, no VGG; load 286, crop 256.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "pix2pix_baseline"
    data = config.data
    data.use_instance = False
    data.resize_or_crop = "resize_and_crop"
    data.load_size = 286
    data.fine_size = 256

    model = config.model
    model.netG = "unet_256"
    model.netD = "patch"
    model.norm = "batch"
    model.use_dropout = True
    model.num_D = 1

    loss = config.loss
    loss.no_lsgan = True
    loss.no_ganFeat_loss = True
    loss.no_vgg_loss = True
    loss.lambda_l1 = 100.0
    return config
