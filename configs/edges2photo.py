"""RGB label images (label_nc=0), e.g. edges-to-photo, from {phase}_A/{phase}_B folders.

For pix2pix-style A|B side-by-side files use --config.data.dataset_format=ab.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.name = "edges2photo"
    data = config.data
    data.dataset_format = "aligned"
    data.dataroot = "./datasets/edges2photo"
    data.label_nc = 0
    data.input_nc = 3
    data.use_instance = False
    data.resize_or_crop = "resize_and_crop"
    data.load_size = 286
    data.fine_size = 256
    config.model.n_downsample_global = 3
    config.model.num_D = 2
    return config
