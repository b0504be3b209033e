"""The generator's and discriminator's input channels (paper sec. 3.3).

These work on numpy and jax.numpy arrays alike (pass `xp`), so the input
pipeline can build them on the host and the train step on the device.
"""

import numpy as np

from pix2pixhd_jax.errors import UserError


def instance_boundaries(inst, xp=np):
    """Instance boundary map: 1 where a pixel's id differs from a 4-neighbour's.

    Both sides of every difference are marked, as in the reference's get_edges,
    so boundaries are about two pixels wide. `inst` is (..., H, W); the result has
    the same shape and dtype float32.
    """
    horizontal = inst[..., :, 1:] != inst[..., :, :-1]
    vertical = inst[..., 1:, :] != inst[..., :-1, :]
    pad = [(0, 0)] * (inst.ndim - 2)
    edge = xp.pad(horizontal, pad + [(0, 0), (1, 0)]) | xp.pad(horizontal, pad + [(0, 0), (0, 1)])
    edge = edge | xp.pad(vertical, pad + [(1, 0), (0, 0)]) | xp.pad(vertical, pad + [(0, 1), (0, 0)])
    return edge.astype(xp.float32)


def one_hot_labels(label, label_nc, xp=np):
    """(..., H, W) integer ids -> (..., H, W, label_nc) float32 one-hot."""
    return (label[..., None] == xp.arange(label_nc, dtype=label.dtype)).astype(xp.float32)


def size_divisor(model_cfg) -> int:
    """The factor every training and synthesis size must be a multiple of."""
    net = model_cfg.netG
    if net == "global":
        return 2 ** model_cfg.n_downsample_global
    if net == "local":
        return 2 ** (model_cfg.n_downsample_global + model_cfg.n_local_enhancers)
    if net.startswith("unet_"):
        # unet_256 halves eight times, unet_128 seven times.
        return {"unet_256": 256, "unet_128": 128}[net]
    raise UserError(f"model.netG={net!r} is not one of 'global', 'local', 'unet_256', 'unet_128'")
