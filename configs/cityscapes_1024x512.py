"""Cityscapes, first stage: the global generator at 1024x512 (the reference's train_512p.sh)."""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "label2city_512p"
    config.data.dataset_format = "cityscapes"
    config.data.dataroot = "./datasets/cityscapes"
    config.data.resize_or_crop = "scale_width"
    config.data.load_size = 1024
    # Every layer recomputed in the backward pass but the 1024-channel residual blocks, and the
    # parameters and Adam's state split over the devices: 3.9 GiB per v5e chip for one image
    # (5.1 GiB with the state replicated on every chip; experiments/benchmarks.md, "TPU").
    config.train.remat = "layers"
    config.train.shard_params = True
    return config
