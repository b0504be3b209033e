"""Spatially-adaptive normalisation (Park et al. 2019, sec. 3) and SPADE's residual block.

SPADE normalises an activation without parameters of its own (batch norm without affine
parameters, or instance norm), then scales and shifts it per pixel by gamma and beta that two
convs compute from the label map (resized to the activation by nearest neighbour) through a
shared conv with 128 channels (both references; `hidden`) and ReLU: out = norm(x) * (1 + gamma) + beta. The residual block
(sec. 3, fig. 4) is SPADE, LeakyReLU(0.2), conv 3x3, twice, with a learned 1x1 shortcut (SPADE,
conv, no bias) when the channel count changes; its convs are spectrally normalised.

Layer for layer NVlabs/SPADE's normalization.SPADE and architecture.SPADEResnetBlock (OASIS's
ResnetBlock_with_SPADE is the same block). NHWC. Parameter names: norm_0, norm_1, norm_shortcut
(each: param_free_norm, shared, gamma, beta), conv_0, conv_1, conv_shortcut;
`pix2pixhd_jax.weights.spade` maps them to the references' keys.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.models.layers import BatchNorm, instance_norm
from pix2pixhd_jax.models.spectral_norm import SpectralConv

PARAM_FREE_NORMS = ("batch", "instance")
SPADE_HIDDEN = 128  # nhidden, fixed in both references


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """F.interpolate(mode='nearest')'s source index for every output index: floor(i * in/out),
    with the scale in float32 as torch computes it."""
    scale = np.float32(in_size) / np.float32(out_size)
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64), in_size - 1)


def nearest_resize(x, height: int, width: int):
    """F.interpolate(x, size=(height, width), mode='nearest') on NHWC. Whole-number factors are
    strided slices or repeats (the cases the networks meet); other sizes gather."""
    h, w = x.shape[1], x.shape[2]
    if (h, w) == (height, width):
        return x
    if h % height == 0 and w % width == 0:
        return x[:, ::h // height, ::w // width]
    if height % h == 0 and width % w == 0:
        return upsample(x, height // h, width // w)
    return x[:, nearest_indices(h, height)][:, :, nearest_indices(w, width)]


def upsample(x, fh: int = 2, fw: int = 2):
    """nn.Upsample(scale_factor) with mode 'nearest' on NHWC: every pixel repeated fh x fw."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, fh, w, fw, c))
    return x.reshape(n, h * fh, w * fw, c)


class SPADE(nn.Module):
    """norm(x) * (1 + gamma(s)) + beta(s), s the label map resized to x. `param_free_norm`: 'batch'
    (statistics of the batch in training, running statistics otherwise, as torch's BatchNorm2d
    with affine=False; the references' 'syncbatch' is the same over the whole global batch, which
    is what a sharded batch gives) or 'instance'. The convs are plain (no spectral norm)."""

    param_free_norm: str = "batch"
    kernel_size: int = 3
    hidden: int = SPADE_HIDDEN
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, segmap, train: bool = False):
        if self.param_free_norm == "batch":
            normalized = BatchNorm(affine=False, dtype=self.dtype, name="param_free_norm")(x, train)
        elif self.param_free_norm == "instance":
            normalized = instance_norm(x)
        else:
            raise ValueError(f"SPADE param_free_norm={self.param_free_norm!r} is not one of {PARAM_FREE_NORMS}")
        segmap = nearest_resize(segmap, x.shape[1], x.shape[2]).astype(self.dtype)
        pad = self.kernel_size // 2
        actv = nn.relu(SpectralConv(self.hidden, self.kernel_size, padding=pad, spectral=False, dtype=self.dtype,
                                    name="shared")(segmap))
        gamma = SpectralConv(x.shape[-1], self.kernel_size, padding=pad, spectral=False, dtype=self.dtype,
                             name="gamma")(actv)
        beta = SpectralConv(x.shape[-1], self.kernel_size, padding=pad, spectral=False, dtype=self.dtype,
                            name="beta")(actv)
        return normalized.astype(self.dtype) * (1 + gamma) + beta


class SPADEResnetBlock(nn.Module):
    """x_s + conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x, s))), s))); x_s = conv_shortcut(norm_shortcut(x, s))
    when the channel count changes (fin != fout), else x. The middle width is min(fin, fout)."""

    features: int
    spectral_norm: bool = True
    param_free_norm: str = "batch"
    spade_kernel_size: int = 3
    spade_hidden: int = SPADE_HIDDEN
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, segmap, train: bool = False):
        fin = x.shape[-1]
        middle = min(fin, self.features)

        def spade(name):
            return SPADE(self.param_free_norm, self.spade_kernel_size, self.spade_hidden, dtype=self.dtype, name=name)

        def conv(features, kernel, name, use_bias=True):
            return SpectralConv(features, kernel, padding=kernel // 2, use_bias=use_bias, spectral=self.spectral_norm,
                                dtype=self.dtype, name=name)

        if fin != self.features:
            x_s = conv(self.features, 1, "conv_shortcut", use_bias=False)(spade("norm_shortcut")(x, segmap, train),
                                                                          train)
        else:
            x_s = x
        dx = conv(middle, 3, "conv_0")(nn.leaky_relu(spade("norm_0")(x, segmap, train), 0.2), train)
        dx = conv(self.features, 3, "conv_1")(nn.leaky_relu(spade("norm_1")(dx, segmap, train), 0.2), train)
        return x_s + dx
