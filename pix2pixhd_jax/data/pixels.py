"""The photo's two scales: floats in [-1, 1] as the networks see them, uint8 levels as files hold them.

One set of functions for every place that converts (the pipeline, synthesis, export, evaluation,
the segmenter, pictures), on numpy or jax.numpy arrays (pass `xp`), so the host and the programs
agree to the level:

- `to_uint8`: a generated image as the reference's util.tensor2im writes it,
  ((x + 1) / 2 * 255) clipped to [0, 255] and truncated, in float32: the reference's pictures
  and this project's are the same PNGs;
- `from_uint8`: levels to [-1, 1];
- `back_to_uint8`: the levels an image read from a file had (from_uint8's inverse, rounding),
  for real photos that went through the pipeline.
"""

import numpy as np


def to_uint8(image, xp=np):
    """[-1, 1] floats -> uint8 as the reference writes its pictures (truncation after clipping)."""
    levels = (xp.asarray(image, xp.float32) + 1.0) / 2.0 * 255.0
    return xp.clip(levels, 0, 255).astype(xp.uint8)


def from_uint8(image, xp=np):
    """uint8 levels (or any 0..255 numbers) -> float32 in [-1, 1]."""
    return xp.asarray(image).astype(xp.float32) / 127.5 - 1.0


def back_to_uint8(image, xp=np):
    """The uint8 levels of an image from_uint8 made (rounded to the nearest level)."""
    levels = (xp.asarray(image, xp.float32) + 1.0) * 127.5
    return xp.clip(xp.floor(levels + 0.5), 0, 255).astype(xp.uint8)
