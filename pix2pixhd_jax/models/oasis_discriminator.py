"""OASIS's discriminator (Sushko et al. 2021, sec. 3.1): a U-Net that segments the image into the
N semantic classes plus one 'fake' class, so its loss gives the generator feedback per pixel.

Layer for layer boschresearch/OASIS's OASIS_Discriminator. It sees the image alone (no label
map). An encoder of residual blocks, each halving the resolution (2x2 average pooling), then a
decoder of residual blocks, each doubling it (nearest) and reading the encoder's output of the same
resolution joined before its own input (skip first); a 1x1 conv gives N + 1 logits per pixel,
channel 0 the fake class and channel c + 1 class c (the order OASIS's loss targets assume).

Widths: the encoder's blocks end at ndf * (2, 2, 4, 4, 8, 8) (128, 128, 256, 256, 512, 512 for
OASIS's 64), the decoder's mirror them and its last block ends at ndf. The reference is written
for 6 blocks each way; fewer keep the first widths of the list. Every conv of the blocks is
spectrally normalised (OASIS's --no_spectral_norm turns it off); the last 1x1 conv is plain.

Residual block (OASIS's residual_block_D): conv_0 and conv_1 are 3x3, each after a
LeakyReLU(0.2) except conv_0 of the very first block; an up block upsamples before conv_0, a down
block average-pools after conv_1; the shortcut is a 1x1 conv (with bias) when the width changes,
pooled after the conv (before it in the first block) or upsampled before it. Parameter names:
down_0 ..., up_0 ..., each with conv_0, conv_1, conv_shortcut; conv_out.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pix2pixhd_jax.models.spade import upsample
from pix2pixhd_jax.models.spectral_norm import SpectralConv

ENCODER_WIDTHS = (2, 2, 4, 4, 8, 8)  # x ndf


def avg_pool2(x):
    """nn.AvgPool2d(2): means of 2x2 windows, a trailing odd row or column dropped."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class OASISResBlockD(nn.Module):
    """One residual block of OASIS's discriminator; `direction` -1 pools, +1 upsamples."""

    features: int
    direction: int
    first: bool = False
    spectral_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv(features, kernel, name):
            return SpectralConv(features, kernel, padding=kernel // 2, spectral=self.spectral_norm, dtype=self.dtype,
                                name=name)

        learned_shortcut = x.shape[-1] != self.features
        # The shortcut.
        x_s = x
        if self.first and self.direction < 0:
            x_s = avg_pool2(x_s)
        if self.direction > 0:
            x_s = upsample(x_s)
        if learned_shortcut:
            x_s = conv(self.features, 1, "conv_shortcut")(x_s, train)
        if not self.first and self.direction < 0:
            x_s = avg_pool2(x_s)
        # The residual.
        dx = x if self.first else nn.leaky_relu(x, 0.2)
        if self.direction > 0:
            dx = upsample(dx)
        dx = conv(self.features, 3, "conv_0")(dx, train)
        dx = conv(self.features, 3, "conv_1")(nn.leaky_relu(dx, 0.2), train)
        if self.direction < 0:
            dx = avg_pool2(dx)
        return x_s + dx


class OASISDiscriminator(nn.Module):
    """image (N, H, W, 3) -> logits (N, H, W, num_classes + 1). H and W: multiples of 2**num_res_blocks."""

    num_classes: int
    ndf: int = 64
    num_res_blocks: int = 6
    spectral_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = self.num_res_blocks
        if not 2 <= n <= len(ENCODER_WIDTHS):
            raise ValueError(f"OASISDiscriminator num_res_blocks={n} is not between 2 and {len(ENCODER_WIDTHS)}")
        factor = 2 ** n
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"OASISDiscriminator: {x.shape[1]}x{x.shape[2]} is not a multiple of {factor}")
        widths = [self.ndf * m for m in ENCODER_WIDTHS[:n]]
        block = dict(spectral_norm=self.spectral_norm, dtype=self.dtype)
        x = x.astype(self.dtype)
        skips = []
        for i in range(n):
            x = OASISResBlockD(widths[i], -1, first=i == 0, name=f"down_{i}", **block)(x, train)
            skips.append(x)
        # Up block i ends at the width of encoder block n - 2 - i; the last at ndf.
        x = OASISResBlockD(widths[n - 2], 1, name="up_0", **block)(x, train)
        for i in range(1, n):
            out = widths[n - 2 - i] if i < n - 1 else self.ndf
            x = OASISResBlockD(out, 1, name=f"up_{i}", **block)(jnp.concatenate([skips[n - 1 - i], x], -1), train)
        return SpectralConv(self.num_classes + 1, 1, spectral=False, dtype=self.dtype, name="conv_out")(x)
