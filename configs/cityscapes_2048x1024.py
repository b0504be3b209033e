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
    # Every layer recomputed in the backward pass but the global generator's 1024-channel blocks:
    # the step's memory at 2048x1024 fits a 16 GiB chip (experiments/benchmarks.md, "TPU").
    config.train.remat = "layers"
    return config
