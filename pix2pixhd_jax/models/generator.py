"""The coarse-to-fine generator (paper sec. 3.2): GlobalGenerator (G1) and LocalEnhancer (G2, G3, ...).

Layer for layer the reference's networks.GlobalGenerator and networks.LocalEnhancer,
in NHWC. With batch norm, inference normalises each image with its own statistics
(`bn_inference="batch"`), as the reference's test.py computes: it never calls eval(). Parameter names are semantic (conv_in, down_0, res_3, up_1, conv_out);
`pix2pixhd_jax.weights.reference` maps them to the reference's Sequential indices.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pix2pixhd_jax.models.layers import (Conv, ConvTranspose, Norm, ResnetBlock, avg_pool_exclude_pad, block_remat,
                                         layer_remat, reflect_pad)

# The LocalEnhancer's parameter name for G1, which training freezes and loads on its own.
G1 = "global_generator"


def _conv_layer(make_conv, make_norm, pad: int = 0, act=nn.relu):
    """One layer as layer_remat takes it, fn(module, x, train): [reflection pad] conv [norm] act.
    The modules are made inside, so they belong to the (possibly rematerialised) scope."""
    def layer(mdl, x, train):
        x = make_conv()(reflect_pad(x, pad) if pad else x)
        if make_norm is not None:
            x = make_norm()(x, train)
        return act(x)
    return layer


class GlobalGenerator(nn.Module):
    """G1: conv 7x7, n_downsampling strided convs, n_blocks residual blocks, as many
    transposed convs, conv 7x7 + tanh.

    With `features_only` the last reflect-pad/conv/tanh are left out and the
    ngf-channel feature map is returned: the LocalEnhancer's global part.
    """

    output_nc: int = 3
    ngf: int = 64
    n_downsampling: int = 4
    n_blocks: int = 9
    norm: str = "instance"
    use_dropout: bool = False
    features_only: bool = False
    remat: Any = "none"  # train.remat: layers.REMAT_MODES or a jax.checkpoint_policies name
    dtype: Any = jnp.float32
    bn_inference: str = "batch"  # batch norm outside training: each image's statistics, or 'running'

    @nn.compact
    def __call__(self, x, train: bool = False):
        dim = self.ngf * 2 ** self.n_downsampling
        block = block_remat(ResnetBlock, self.remat, dim)
        layer = functools.partial(layer_remat, policy=self.remat, static_argnums=(2,))
        norm = functools.partial(Norm, self.norm, self.dtype, self.bn_inference)
        conv = functools.partial(Conv, dtype=self.dtype)
        x = x.astype(self.dtype)
        x = layer(_conv_layer(lambda: conv(self.ngf, 7, name="conv_in"), lambda: norm(name="norm_in"), pad=3))(
            self, x, train)
        for i in range(self.n_downsampling):
            x = layer(_conv_layer(lambda i=i: conv(self.ngf * 2 ** (i + 1), 3, stride=2, padding=1, name=f"down_{i}"),
                                  lambda i=i: norm(name=f"down_norm_{i}")))(self, x, train)
        for i in range(self.n_blocks):
            x = block(dim, self.norm, self.use_dropout, self.dtype, self.bn_inference, name=f"res_{i}")(x, train)
        for i in range(self.n_downsampling):
            features = self.ngf * 2 ** (self.n_downsampling - i - 1)
            x = layer(_conv_layer(lambda i=i, f=features: ConvTranspose(f, 3, 2, 1, 1, dtype=self.dtype, name=f"up_{i}"),
                                  lambda i=i: norm(name=f"up_norm_{i}")))(self, x, train)
        if self.features_only:
            return x
        return layer(_conv_layer(lambda: conv(self.output_nc, 7, name="conv_out"), None, pad=3, act=jnp.tanh))(
            self, x, train)


class LocalEnhancerBranch(nn.Module):
    """One enhancer: a front end on its pyramid level, added to the coarser output, then
    residual blocks and one upsampling (plus the final conv + tanh on the finest level)."""

    output_nc: int
    ngf: int
    n_blocks: int
    last: bool
    norm: str = "instance"
    use_dropout: bool = False
    remat: Any = "none"
    dtype: Any = jnp.float32
    bn_inference: str = "batch"

    @nn.compact
    def __call__(self, x, coarser, train: bool = False):
        block = block_remat(ResnetBlock, self.remat, self.ngf * 2)
        layer = functools.partial(layer_remat, policy=self.remat, static_argnums=(2,))
        norm = functools.partial(Norm, self.norm, self.dtype, self.bn_inference)
        conv = functools.partial(Conv, dtype=self.dtype)
        x = x.astype(self.dtype)
        y = layer(_conv_layer(lambda: conv(self.ngf, 7, name="conv_in"), lambda: norm(name="norm_in"), pad=3))(
            self, x, train)
        y = layer(_conv_layer(lambda: conv(self.ngf * 2, 3, stride=2, padding=1, name="down"),
                              lambda: norm(name="down_norm")))(self, y, train)
        y = y + coarser
        for i in range(self.n_blocks):
            y = block(self.ngf * 2, self.norm, self.use_dropout, self.dtype, self.bn_inference,
                      name=f"res_{i}")(y, train)
        y = layer(_conv_layer(lambda: ConvTranspose(self.ngf, 3, 2, 1, 1, dtype=self.dtype, name="up"),
                              lambda: norm(name="up_norm")))(self, y, train)
        if self.last:
            y = layer(_conv_layer(lambda: conv(self.output_nc, 7, name="conv_out"), None, pad=3, act=jnp.tanh))(
                self, y, train)
        return y


class LocalEnhancer(nn.Module):
    """G = {G1, G2, ...}: the global generator (ngf * 2**n_local_enhancers filters) runs on
    the input downsampled n_local_enhancers times; each enhancer works one pyramid level
    finer. Parameters: `global_generator` (G1) and `enhancer_1` ... `enhancer_N`
    (enhancer_N sees full resolution), so G1 can be frozen or loaded on its own."""

    output_nc: int = 3
    ngf: int = 32
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    norm: str = "instance"
    use_dropout: bool = False
    remat: Any = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(avg_pool_exclude_pad(pyramid[-1]))
        out = GlobalGenerator(
            self.output_nc, self.ngf * 2 ** self.n_local_enhancers, self.n_downsample_global,
            self.n_blocks_global, self.norm, self.use_dropout, features_only=True, remat=self.remat,
            dtype=self.dtype, name=G1,
        )(pyramid[-1], train)
        for n in range(1, self.n_local_enhancers + 1):
            branch = LocalEnhancerBranch(
                self.output_nc, self.ngf * 2 ** (self.n_local_enhancers - n), self.n_blocks_local,
                last=n == self.n_local_enhancers, norm=self.norm, use_dropout=self.use_dropout,
                remat=self.remat, dtype=self.dtype, name=f"enhancer_{n}",
            )
            out = branch(pyramid[self.n_local_enhancers - n], out, train)
        return out
