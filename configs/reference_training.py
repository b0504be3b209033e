"""NVIDIA's pix2pixHD and this project trained the same way: `configs/reference_training.py:VARIANT`,
run on both sides by experiments/reference_training.py (which derives the reference's train.py
options from this config).

  gan_fm  the comparison's pix2pixHD with the paper's losses without VGG
          (configs/paper_comparison.py:pix2pixhd_gan_fm): global G ngf 16, 3 downsamplings,
          3 blocks, instance boundaries, 2-scale D ndf 8, LSGAN + feature matching, random
          128x128 crops of the 256x128 scenes and flips, batch 4, lr 2e-4 for 32 epochs then
          linearly to 0 over 16 (2400 steps); a checkpoint every 300 steps, which the
          judge scores after training (on both sides alike, so nothing is scored in the loop)
  vgg     the same with the VGG term (weight lambda_feat = 10, as the reference); needs
          loss.vgg_weights=FILE, the one VGG19 file both sides read
"""

from configs import paper_comparison

VARIANTS = ("gan_fm", "vgg")


def get_config(variant="gan_fm"):
    if variant not in VARIANTS:
        raise ValueError(f"configs/reference_training.py:{variant}: not one of {', '.join(VARIANTS)}")
    config = paper_comparison.get_config("pix2pixhd_gan_fm")
    config.name = f"reference_training_{variant}"
    # The reference saves G every --save_epoch_freq epochs: 300 steps = 6 epochs of 50 steps.
    config.train.save_latest_freq = 300
    config.train.eval_every = 0
    if variant == "vgg":
        config.loss.no_vgg_loss = False
        config.loss.vgg_weights = ""  # --config.loss.vgg_weights=FILE
    return config
