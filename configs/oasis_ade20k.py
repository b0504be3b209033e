"""OASIS on ADE20K (Sushko et al. 2021): boschresearch/OASIS's settings for --dataset_mode ade20k
(config.py, its ADE20K defaults, scripts/train_ade20k.sh).

ADEChallengeData2016 (data.dataroot: the folder holding it, or the release folder itself); images
and label maps resized to 286x286 and randomly cropped to 256x256 in training, flipped, no
instance maps (OASIS tests on whole images resized to 256x256: synthesis and evaluation here take
--config.data.load_size=256 for that); the 151 annotation ids one-hot (OASIS's semantic_nc: 150 + the
don't-care id 0, 'other'). G: SPADE blocks as OASIS has them (6 blocks, channels_G 64, 5
upsamplings from 8x8), 3D noise of 64 channels, spectral norm, parameter-free batch norm in SPADE;
D: OASIS's U-Net. Losses: the (N+1)-class cross-entropy with class balancing (id 0 weighs 0) and
LabelMix (lambda 10), no VGG term. Adam with betas (0, 0.999), lr G 1e-4 and D 4e-4, constant for
200 epochs, batch 32, and a moving average of G's weights (decay 0.9999) for synthesis and
evaluation.

    pix2pixhd-jax train --config configs/oasis_ade20k.py --workdir runs/oasis_ade20k \\
        --config.data.dataroot=/data/ADEChallengeData2016
"""

from configs import oasis_cityscapes


def get_config():
    config = oasis_cityscapes.get_config()
    config.name = "oasis_ade20k"
    data = config.data
    data.dataset_format = "ade20k"
    data.dataroot = "./datasets/ADEChallengeData2016"
    data.label_nc = 151
    data.resize_or_crop = "resize_and_crop"
    data.load_size = 286
    data.fine_size = 256

    config.loss.lambda_labelmix = 10.0
    train = config.train
    train.batch_size = 32
    train.lr = 1e-4  # G
    train.lr_D = 4e-4
    train.ema_decay = 0.9999
    return config
