"""Cityscapes, second stage: the local enhancer at 2048x1024 (train_1024p_24G.sh).

Start it from a finished first stage with --config.train.init_from=WORKDIR_512P.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "label2city_1024p"
    config.data.dataset_format = "cityscapes"
    config.data.dataroot = "./datasets/cityscapes"
    config.data.resize_or_crop = "none"
    config.data.load_size = 2048
    config.model.netG = "local"
    config.model.ngf = 32
    config.model.num_D = 3
    config.model.n_local_enhancers = 1
    config.model.n_blocks_local = 3
    config.train.niter = 50
    config.train.niter_decay = 50
    config.train.niter_fix_global = 10
    # G's residual blocks recomputed in the backward pass: 11.7 GiB per v5e chip for one image
    # at 9% more FLOPs, where keeping everything takes 12.5 GiB; train.remat=layers takes 10.9 GiB
    # at 30% more (experiments/benchmarks.md, "TPU").
    config.train.remat = "blocks"
    return config
