"""pix2pix's U-Net generator (Isola et al. 2017), the baseline pix2pixHD compares against.

A faithful NHWC port of `UnetGenerator` / `UnetSkipConnectionBlock` from
junyanz/pytorch-CycleGAN-and-pix2pix (`unet_256`: num_downs=8, `unet_128`: num_downs=7).

The reference nests blocks recursively; here the same network is written as a flat
encoder/decoder loop over levels i = 0 (outermost) .. num_downs-1 (innermost), with
parameters named per level:

    down_{i}/conv/kernel[, bias]      Conv2d(k4, s2, p1)            every level
    down_norm_{i}/bn/...              norm after the down conv      0 < i < num_downs-1
    up_{i}/conv/kernel[, bias]        ConvTranspose2d(k4, s2, p1)   every level
    up_norm_{i}/bn/...                norm after the up conv        i > 0

Level i (block from the outside in):
    i = 0            : downconv -> [inner] -> ReLU -> upconv(bias) -> Tanh          (no skip)
    0 < i < n-1      : LeakyReLU(0.2) -> downconv -> norm -> [inner] -> ReLU -> upconv -> norm
                       [-> Dropout(0.5) for the num_downs-5 ngf*8 levels 4..n-2], then concat([x, y])
    i = n-1          : LeakyReLU(0.2) -> downconv -> ReLU -> upconv -> norm, then concat([x, y])
Channels: inner(i) = ngf * min(2**i, 8); outer(0) = output_nc, outer(i) = inner(i-1).
Convs before a norm have a bias only when norm is 'instance' (pix2pix's `use_bias`), the
outermost down conv included; the outermost up conv always has one.

Note on the reference's in-place LeakyReLU: `torch.cat([x, self.model(x)], 1)` there
concatenates x *after* the block's in-place LeakyReLU has overwritten it, so the skip carries
leaky_relu(x) rather than x. Every skip concat is immediately followed by the parent's ReLU,
and relu(leaky_relu(x)) == relu(x), so the plain concat here computes the same function.

Initialisation is pix2pix's init_weights('normal', 0.02): conv/deconv weights N(0, 0.02),
**biases 0** (layers' `zero_bias=True`; unlike pix2pixHD, which keeps PyTorch's default uniform biases), BatchNorm
scale N(1, 0.02) and bias 0.

`train` drives BatchNorm (batch statistics and updates to the 'batch_stats' collection when
True; apply with `mutable=['batch_stats']`) and Dropout (needs a 'dropout' rng when True).
pix2pix uses dropout as the generator's only noise source, and its test.py runs the
generator in *train mode by default* (dropout on and batch statistics; `--eval` switches to
running statistics without dropout), so callers choose: `train=True` reproduces pix2pix's
default test behaviour, `train=False` is the deterministic eval mode.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pix2pixhd_jax.models.layers import Conv, ConvTranspose, Norm


def check_num_downs(num_downs: int):
    if num_downs < 5:
        raise ValueError(
            f"num_downs={num_downs} must be >= 5: pix2pix's UnetGenerator builds 5 levels "
            "whatever smaller value it is given (unet_128 is 7, unet_256 is 8)"
        )


def _inner_nc(ngf: int, i: int) -> int:
    return ngf * min(2**i, 8)


class UnetGenerator(nn.Module):
    """pix2pix's UnetGenerator on NHWC images in [-1, 1]; output (B, H, W, output_nc) in [-1, 1].

    H and W must be divisible by 2**num_downs. See the module docstring for structure,
    initialisation and the meaning of `train`.
    """

    output_nc: int = 3
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, ngf = self.num_downs, self.ngf
        check_num_downs(n)
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm={self.norm!r} is not 'batch' or 'instance'")
        if x.ndim != 4:
            raise ValueError(f"UnetGenerator expects NHWC input, got shape {x.shape}")
        div = 2**n
        h, w = x.shape[1], x.shape[2]
        if h % div or w % div:
            raise ValueError(
                f"UnetGenerator(num_downs={n}) needs height and width divisible by 2**{n} = {div}; "
                f"got {h}x{w} (H x W)"
            )
        use_bias = self.norm == "instance"
        x = x.astype(self.dtype)

        # Encoder: skips[i] is level i's down-path output = the input of level i+1.
        skips = []
        y = x
        for i in range(n):
            if i > 0:
                y = nn.leaky_relu(y, 0.2)
            y = Conv(
                _inner_nc(ngf, i), 4, 2, 1, use_bias=use_bias, zero_bias=True, dtype=self.dtype, name=f"down_{i}"
            )(y)
            if 0 < i < n - 1:
                y = Norm(self.norm, self.dtype, name=f"down_norm_{i}")(y, train)
            skips.append(y)

        # Decoder, from the innermost level out.
        for i in reversed(range(n)):
            outer = self.output_nc if i == 0 else _inner_nc(ngf, i - 1)
            y = nn.relu(y)
            y = ConvTranspose(
                outer, 4, 2, 1, use_bias=True if i == 0 else use_bias, zero_bias=True, dtype=self.dtype,
                name=f"up_{i}",
            )(y)
            if i == 0:
                return jnp.tanh(y.astype(jnp.float32))
            y = Norm(self.norm, self.dtype, name=f"up_norm_{i}")(y, train)
            if self.use_dropout and 4 <= i <= n - 2:
                y = nn.Dropout(0.5, deterministic=not train)(y)
            y = jnp.concatenate([skips[i - 1], y], axis=-1)
