"""Cityscapes, first stage: the global generator at 1024x512 (the reference's train_512p.sh)."""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "label2city_512p"
    config.data.dataset_format = "cityscapes"
    config.data.dataroot = "./datasets/cityscapes"
    config.data.resize_or_crop = "scale_width"
    config.data.load_size = 1024
    # Nothing recomputed in the backward pass: 4.7 GiB per v5e chip for one image, where
    # recomputing every layer (train.remat=layers) takes more, 5.1 GiB, and 20% more FLOPs
    # (experiments/benchmarks.md, "TPU").
    config.train.remat = "none"
    return config
