"""ADE20K scene parsing at 512x512: the paper's ADE20K experiments (pix2pixHD, sec. 4).

The official ADEChallengeData2016 release (data.dataroot: the folder holding it, or the release
folder itself): 20,210 training and 2,000 validation images, annotations with ids 0..150 (0 =
other), no instance maps. Every image is resized to 512x512 (the reference's resize_and_crop
with load_size = fine_size = 512, so no crop), the global generator, every other setting the
reference's default (configs/default.py). The test phase reads the validation split.

    pix2pixhd-jax train --config configs/ade20k_512x512.py --workdir runs/ade20k \
        --config.data.dataroot=/data/ADEChallengeData2016 --config.loss.vgg_weights=vgg19.npz
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "ade20k_512p"
    data = config.data
    data.dataset_format = "ade20k"
    data.dataroot = "./datasets/ADEChallengeData2016"
    data.label_nc = 151
    data.use_instance = False
    data.resize_or_crop = "resize_and_crop"
    data.load_size = 512
    data.fine_size = 512
    return config
