"""The photo's two scales: floats in [-1, 1] as the networks see them, integer levels as files
hold them (8 bits, or 16 for depth, infrared and medical images: data.image_bit_depth).

One set of functions for every place that converts (the pipeline, synthesis, export, evaluation,
the segmenter, pictures), on numpy or jax.numpy arrays (pass `xp`), so the host and the programs
agree to the level:

- `to_levels` (`to_uint8` for 8 bits): a generated image as the reference's util.tensor2im
  writes it, ((x + 1) / 2 * max) clipped to [0, max] and truncated, in float32: the reference's
  pictures and this project's are the same PNGs;
- `from_levels`: levels to [-1, 1], as the programs scale photos and label images
  on the device (the data carries the levels);
- `view_uint8`: any of them as 8-bit RGB, for grids and TensorBoard.
"""

import numpy as np

BIT_DEPTHS = (8, 16)


def _max_level(bits: int) -> float:
    if bits not in BIT_DEPTHS:
        raise ValueError(f"image bit depth {bits} is not one of {BIT_DEPTHS}")
    return float(2 ** bits - 1)


def level_dtype(bits: int, xp=np):
    return xp.uint8 if bits == 8 else xp.uint16


def to_levels(image, bits: int = 8, xp=np):
    """[-1, 1] floats -> uint8/uint16 as the reference writes its pictures (truncation after clipping)."""
    top = _max_level(bits)
    levels = (xp.asarray(image, xp.float32) + 1.0) / 2.0 * top
    return xp.clip(levels, 0, top).astype(level_dtype(bits, xp))


def from_levels(image, bits: int = 8, xp=np):
    """Integer levels (or any 0..max numbers) -> float32 in [-1, 1]."""
    return xp.asarray(image).astype(xp.float32) / (_max_level(bits) / 2.0) - 1.0


def to_uint8(image, xp=np):
    return to_levels(image, 8, xp)


def view_uint8(levels: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 or uint16 levels -> (H, W, 3) uint8 for looking at (16 bits: the top byte)."""
    levels = np.asarray(levels)
    if levels.dtype == np.uint16:
        levels = (levels >> 8).astype(np.uint8)
    if levels.ndim == 2:
        levels = levels[..., None]
    return np.repeat(levels, 3, axis=-1) if levels.shape[-1] == 1 else levels
