"""The instance-level feature encoder E (paper sec. 3.4).

E is an encoder-decoder like the global generator without residual blocks; its
output is averaged over each instance (instance-wise average pooling), so every
pixel of an object carries the object's feature. The pooling is a segment mean
over instance ids, with no Python loop over instances, under jit, per batch item.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pixhd_jax.models.generator import GlobalGenerator


def _pool_one(features, inst):
    """(H, W, C) features, (H, W) ids -> every pixel gets its instance's mean feature."""
    flat = inst.reshape(-1)
    # Dense ids 0..K-1 with a static bound (one instance per pixel at most), so any ids
    # work (Cityscapes' 26001, negative, sparse) and nothing is ever truncated.
    _, dense = jnp.unique(flat, return_inverse=True, size=flat.size)
    dense = dense.reshape(-1)
    values = features.reshape(-1, features.shape[-1]).astype(jnp.float32)
    sums = jax.ops.segment_sum(values, dense, num_segments=flat.size)
    counts = jax.ops.segment_sum(jnp.ones_like(dense, jnp.float32), dense, num_segments=flat.size)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    return means[dense].reshape(features.shape).astype(features.dtype)


def instance_average_pool(features, inst):
    """Instance-wise average pooling: (B, H, W, C) features, (B, H, W) int ids."""
    return jax.vmap(_pool_one)(features, inst)


class FeatureEncoder(nn.Module):
    """E: the global generator's encoder-decoder without residual blocks (conv 7x7 -> nef,
    n_downsampling strided convs, as many transposed convs, conv 7x7 -> feat_num, tanh),
    then instance-wise average pooling when `inst` is given. Its parameters sit under
    `encoder_decoder`."""

    output_nc: int = 3
    ngf: int = 16
    n_downsampling: int = 4
    norm: str = "instance"
    remat: Any = "none"  # train.remat (layers.REMAT_MODES or a jax.checkpoint_policies name)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, image, inst=None, train: bool = False):
        # Batch norm (model.norm_E=batch) infers with the running statistics: each image's own
        # statistics would make a region's feature relative to its picture, as instance norm does.
        x = GlobalGenerator(self.output_nc, self.ngf, self.n_downsampling, n_blocks=0, norm=self.norm,
                            remat=self.remat, dtype=self.dtype, bn_inference="running",
                            name="encoder_decoder")(image, train)
        if inst is None:
            return x
        return instance_average_pool(x, inst)
