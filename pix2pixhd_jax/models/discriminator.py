"""Multi-scale PatchGAN discriminators (paper sec. 3.2) and pix2pix's 70x70 PatchGAN.

NLayerDiscriminator returns all n_layers + 2 intermediate outputs (feature matching
needs them; the GAN loss takes the last). It never applies a sigmoid: the vanilla
GAN loss works on logits, which equals the reference's Sigmoid + BCELoss.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from pix2pixhd_jax.models.layers import Conv, Norm, avg_pool_exclude_pad, layer_remat


class NLayerDiscriminator(nn.Module):
    """conv s2 + LReLU; (n_layers - 1) x [conv s2, norm, LReLU]; conv s1, norm, LReLU; conv s1 -> 1.

    Kernel 4 with padding 2 in pix2pixHD (a 512x1024 input gives 257, 129, 65, 66, 67
    rows); pix2pix's PatchGAN uses padding 1 and, with batch norm, no bias before a norm.
    """

    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    padding: int = 2
    bias_before_norm: bool = True
    zero_bias: bool = False
    remat: Any = "none"  # train.remat (layers.REMAT_MODES or a jax.checkpoint_policies name)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        outputs = []
        conv = functools.partial(Conv, zero_bias=self.zero_bias, dtype=self.dtype)
        layer = functools.partial(layer_remat, policy=self.remat, static_argnums=(2,))

        def first(mdl, x, train):
            return nn.leaky_relu(conv(self.ndf, 4, 2, self.padding, name="layer_0")(x), 0.2)

        x = layer(first)(self, x, train)
        outputs.append(x)
        nf = self.ndf
        for n in range(1, self.n_layers + 1):
            nf = min(nf * 2, 512)
            stride = 2 if n < self.n_layers else 1

            def middle(mdl, x, train, n=n, nf=nf, stride=stride):
                x = conv(nf, 4, stride, self.padding, use_bias=self.bias_before_norm, name=f"layer_{n}")(x)
                return nn.leaky_relu(Norm(self.norm, self.dtype, name=f"norm_{n}")(x, train), 0.2)

            x = layer(middle)(self, x, train)
            outputs.append(x)
        outputs.append(conv(1, 4, 1, self.padding, name=f"layer_{self.n_layers + 1}")(x))
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """num_D NLayerDiscriminators on the input downsampled 0, 1, ... times by
    AvgPool(3, 2, pad 1, count_include_pad=False).

    Returns one list of features per scale, finest first. As in the reference the
    discriminator that sees full resolution is named scale_{num_D-1}, so the scales
    of a num_D=2 model keep their resolutions when a num_D=3 model is built on it.
    """

    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2
    norm: str = "instance"
    remat: Any = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        results = []
        for i in range(self.num_D):
            d = NLayerDiscriminator(self.ndf, self.n_layers, self.norm, remat=self.remat, dtype=self.dtype,
                                    name=f"scale_{self.num_D - 1 - i}")
            results.append(d(x, train))
            if i != self.num_D - 1:
                x = avg_pool_exclude_pad(x)
        return results


class PatchDiscriminator(nn.Module):
    """pix2pix's 70x70 PatchGAN (kernel 4, padding 1) as a one-scale multi-scale D,
    so the losses treat both models alike."""

    ndf: int = 64
    n_layers: int = 3
    norm: str = "batch"
    remat: Any = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = NLayerDiscriminator(self.ndf, self.n_layers, self.norm, padding=1,
                                bias_before_norm=self.norm == "instance", zero_bias=True, remat=self.remat,
                                dtype=self.dtype, name="scale_0")
        return [d(x, train)]
