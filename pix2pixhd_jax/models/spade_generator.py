"""SPADE's generator (Park et al. 2019, sec. 3, fig. 4 and appendix A) and OASIS's (Sushko et al.
2021, sec. 3.2), which is SPADE's with 3D noise and one residual block fewer.

Both start from the label map resized by nearest neighbour to 1/2^k of the output (k the number
of upsamplings), a 3x3 conv to 16 * ngf channels, then SPADE residual blocks with a nearest 2x
upsampling before all but the first, LeakyReLU(0.2), a 3x3 conv to the image, tanh. Every SPADE
in every block sees the full-resolution label map.

  arch 'spade'  NVlabs/SPADE's SPADEGenerator without the VAE: blocks head_0 (16->16 ngf),
                G_middle_0 (16->16), G_middle_1 (16->16), up_0 ... up_3 (16->8->4->2->1);
                num_upsampling_layers 'normal' upsamples 5 times, 'more' adds one between the
                middle blocks (SPADE's Cityscapes), 'most' also adds up_4 (1 -> 1/2 ngf).
  arch 'oasis'  boschresearch/OASIS's OASIS_Generator: num_res_blocks blocks (6 in OASIS) over
                the widths 16, 16, 16, 8, 4, 2, 1 (x ngf), upsampling before every block but the
                first. The reference is written for 6 blocks; fewer take the last widths of the
                list, so a small model ends at ngf channels as the full one does.

3D noise (OASIS, sec. 3.2): with z_dim > 0 the generator reads a noise map (N, H, W, z_dim) and
joins it to the label map, noise first (the reference's channel order), both for the first conv
and for every SPADE. OASIS's training draws one z per image, the same at every pixel
(`broadcast_noise`); a map that differs by region (the editor's restyle) is the same input.

Parameter names: conv_in (the reference's fc), block_0 ... block_{n-1}, conv_out (conv_img);
`pix2pixhd_jax.weights.spade` and `.oasis` map them to the references' keys.
"""

from typing import Any, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pixhd_jax.models.spade import SPADE_HIDDEN, SPADEResnetBlock, nearest_resize, upsample
from pix2pixhd_jax.models.spectral_norm import SpectralConv

ARCHS = ("spade", "oasis")
UPSAMPLING_LAYERS = ("normal", "more", "most")
OASIS_WIDTHS = (16, 16, 16, 8, 4, 2, 1)
# The reference's block names, in order, for arch 'spade' with num_upsampling_layers 'most'.
SPADE_BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3", "up_4")


def spade_blocks(ngf: int, num_upsampling_layers: str) -> List[Tuple[str, int, bool]]:
    """(the reference's block name, output width, upsample before it) for arch 'spade'."""
    if num_upsampling_layers not in UPSAMPLING_LAYERS:
        raise ValueError(f"num_upsampling_layers={num_upsampling_layers!r} is not one of {UPSAMPLING_LAYERS}")
    more = num_upsampling_layers in ("more", "most")
    plan = [("head_0", 16 * ngf, False), ("G_middle_0", 16 * ngf, True), ("G_middle_1", 16 * ngf, more),
            ("up_0", 8 * ngf, True), ("up_1", 4 * ngf, True), ("up_2", 2 * ngf, True), ("up_3", ngf, True)]
    if num_upsampling_layers == "most":
        plan.append(("up_4", ngf // 2, True))
    return plan


def oasis_blocks(ngf: int, num_res_blocks: int) -> List[Tuple[str, int, bool]]:
    """(the reference's block name, output width, upsample before it) for arch 'oasis'."""
    if not 1 <= num_res_blocks <= len(OASIS_WIDTHS) - 1:
        raise ValueError(f"num_res_blocks={num_res_blocks} is not between 1 and {len(OASIS_WIDTHS) - 1}")
    widths = OASIS_WIDTHS[len(OASIS_WIDTHS) - 1 - num_res_blocks:]
    return [(f"body.{i}", widths[i + 1] * ngf, i > 0) for i in range(num_res_blocks)]


def generator_blocks(arch: str, ngf: int, num_res_blocks: int = 6, num_upsampling_layers: str = "normal"):
    """The block plan of either generator: [(reference name, width, upsample before)]; the input
    width (of conv_in) is 16 * ngf for 'spade' and the first of OASIS's widths for 'oasis'."""
    if arch == "spade":
        return spade_blocks(ngf, num_upsampling_layers)
    if arch == "oasis":
        return oasis_blocks(ngf, num_res_blocks)
    raise ValueError(f"generator arch={arch!r} is not one of {ARCHS}")


def input_width(arch: str, ngf: int, num_res_blocks: int = 6) -> int:
    if arch == "spade":
        return 16 * ngf
    return OASIS_WIDTHS[len(OASIS_WIDTHS) - 1 - num_res_blocks] * ngf


def num_upsamplings(arch: str, num_res_blocks: int = 6, num_upsampling_layers: str = "normal") -> int:
    """How many times G doubles its resolution: every size must be a multiple of 2 to this power."""
    return sum(up for _, _, up in generator_blocks(arch, 2, num_res_blocks, num_upsampling_layers))


def broadcast_noise(rng, batch: int, height: int, width: int, z_dim: int, dtype=jnp.float32):
    """OASIS's training noise: one z ~ N(0, I) per image, the same at every pixel: (N, H, W, z_dim)."""
    z = jax.random.normal(rng, (batch, 1, 1, z_dim), dtype)
    return jnp.broadcast_to(z, (batch, height, width, z_dim))


class SPADEGenerator(nn.Module):
    """G(label map[, noise]) -> image in [-1, 1]. `__call__(seg, noise=None, train=False)`: seg (N, H,
    W, C) the label channels, noise (N, H, W, z_dim) when z_dim > 0."""

    output_nc: int = 3
    ngf: int = 64
    arch: str = "oasis"
    num_res_blocks: int = 6  # arch 'oasis'
    num_upsampling_layers: str = "normal"  # arch 'spade'
    z_dim: int = 64  # 0: no 3D noise
    spectral_norm: bool = True
    param_free_norm: str = "batch"
    spade_kernel_size: int = 3
    spade_hidden: int = SPADE_HIDDEN
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, seg, noise=None, train: bool = False):
        if self.z_dim:
            if noise is None or noise.shape != seg.shape[:3] + (self.z_dim,):
                got = None if noise is None else noise.shape
                raise ValueError(f"SPADEGenerator with z_dim={self.z_dim} needs noise of shape "
                                 f"{seg.shape[:3] + (self.z_dim,)}, got {got}")
            seg = jnp.concatenate([noise.astype(seg.dtype), seg], axis=-1)
        seg = seg.astype(self.dtype)
        blocks = generator_blocks(self.arch, self.ngf, self.num_res_blocks, self.num_upsampling_layers)
        factor = 2 ** sum(up for _, _, up in blocks)
        h, w = seg.shape[1], seg.shape[2]
        if h % factor or w % factor:
            raise ValueError(f"SPADEGenerator: {h}x{w} is not a multiple of {factor} (2 ** its upsamplings)")
        x = nearest_resize(seg, h // factor, w // factor)
        x = SpectralConv(input_width(self.arch, self.ngf, self.num_res_blocks), 3, padding=1, spectral=False,
                         dtype=self.dtype, name="conv_in")(x)
        for i, (_, width, up) in enumerate(blocks):
            if up:
                x = upsample(x)
            x = SPADEResnetBlock(width, self.spectral_norm, self.param_free_norm, self.spade_kernel_size,
                                 self.spade_hidden, dtype=self.dtype, name=f"block_{i}")(x, seg, train)
        x = SpectralConv(self.output_nc, 3, padding=1, spectral=False, dtype=self.dtype,
                         name="conv_out")(nn.leaky_relu(x, 0.2))
        return jnp.tanh(x)
