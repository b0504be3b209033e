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
    # Random 128x128 crops of the 256x128 scenes (the reference's scale_width_and_crop): half the
    # pixels per step, so twice the steps in the time; synthesis still sees whole scenes.
    data.resize_or_crop = "scale_width_and_crop"
    data.load_size = 256
    data.fine_size = 128
    data.num_parallel_calls = 2

    model = config.model
    # Sized so that `make demo` trains in about 10 minutes on a 2-core CPU (~1.1 steps/s).
    model.ngf = 16
    model.n_downsample_global = 3
    model.n_blocks_global = 3
    model.ndf = 8
    model.num_D = 2

    # No VGG19 weights ship with the project (no downloads at run time), and without the VGG
    # term the GAN + feature-matching losses alone take far longer than the demo's 10 minutes
    # to find each class's colours. An L1 term to the photo stands in for it here (as in
    # pix2pix); set loss.lambda_l1=0 and loss.vgg_weights=FILE for the paper's losses.
    config.loss.no_vgg_loss = True
    config.loss.lambda_l1 = 10.0
    config.train.batch_size = 4
    config.train.lr = 2e-4
    config.train.niter = 8  # 200 scenes / batch 4 = 50 steps per epoch: 600 steps in all
    config.train.niter_decay = 4
    config.train.display_freq = 100
    config.train.print_freq = 10
    config.train.save_latest_freq = 100
    return config
