"""Small and CPU-friendly: the bundled synthetic street scenes at 256x128.

`make demo` writes the scenes to demo/synthetic and points data.dataroot there.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "synthetic_demo"
    data = config.data
    data.dataset_format = "aligned"
    data.dataroot = "demo/synthetic"
    data.resize_or_crop = "scale_width"
    data.load_size = 256
    data.fine_size = 256
    data.num_parallel_calls = 2

    model = config.model
    # Sized so that `make demo` trains in about 10 minutes on a 2-core CPU (~0.5 steps/s).
    model.ngf = 8
    model.n_downsample_global = 3
    model.n_blocks_global = 3
    model.ndf = 8
    model.num_D = 2

    config.loss.no_vgg_loss = True  # no weights file ships with the project
    config.train.batch_size = 4
    config.train.lr = 4e-4  # twice the reference's: few steps to spend
    config.train.niter = 4  # 200 scenes / batch 4 = 50 steps per epoch: 300 steps in all
    config.train.niter_decay = 2
    config.train.display_freq = 50
    config.train.print_freq = 10
    config.train.save_latest_freq = 100
    return config
