"""The six real Cityscapes training triplets in ../shared at 256x128: shows that the real
pipeline (label ids, 16-bit instance ids, photos) trains. Six images cannot generalise: this
is a memorisation check, not a model (experiments/cityscapes_samples.py)."""

from configs import synthetic_demo


def get_config():
    config = synthetic_demo.get_config()
    config.name = "cityscapes_samples"
    config.data.dataroot = "../shared/data/cityscapes_samples"
    config.data.resize_or_crop = "scale_width"  # whole images, 2048x1024 -> 256x128
    config.data.load_size = 256
    config.train.batch_size = 2
    config.train.niter = 100  # 3 steps per epoch: 450 steps in all
    config.train.niter_decay = 50
    config.train.display_freq = 90
    config.train.save_latest_freq = 150
    return config
