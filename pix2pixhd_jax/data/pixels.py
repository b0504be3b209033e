"""The photo's two scales: floats in [-1, 1] as the networks see them, uint8 levels as files hold them.

One pair of functions for every place that converts (the pipeline, synthesis, evaluation,
the segmenter, pictures), on numpy or jax.numpy arrays (pass `xp`), so the host and the
programs agree to the level.
"""

import numpy as np


def to_uint8(image, xp=np):
    """[-1, 1] floats -> uint8 levels, rounded to the nearest level; values outside are clipped."""
    levels = (xp.asarray(image, xp.float32) + 1.0) * 127.5
    return xp.clip(xp.floor(levels + 0.5), 0, 255).astype(xp.uint8)


def from_uint8(image, xp=np):
    """uint8 levels (or any 0..255 numbers) -> float32 in [-1, 1]."""
    return xp.asarray(image).astype(xp.float32) / 127.5 - 1.0
