"""Block scenes: the simplest synthetic label maps, for tests, benchmarks and example inputs.

A grid of class ids, each cell a square block of pixels and one object: its instance id is
class*1000 + the block's index (mod 1000), Cityscapes' convention, so every block is bounded.
Works on numpy and jax.numpy arrays alike (`xp`): the benchmark makes its batches on the device.
"""

import numpy as np


def grid_shape(height: int, width: int, block: int) -> tuple:
    """(rows, columns) of blocks that cover a height x width map."""
    return -(-height // block), -(-width // block)


def block_maps(grid, height: int, width: int, block: int, xp=np):
    """(label ids, instance ids) (..., height, width) of the class-id grid (..., rows, columns)."""
    rows, cols = grid.shape[-2:]
    label = xp.repeat(xp.repeat(grid, block, axis=-2), block, axis=-1)[..., :height, :width]
    index = xp.arange(rows * cols).reshape(rows, cols)
    index = xp.repeat(xp.repeat(index, block, axis=0), block, axis=1)[:height, :width]
    return label, label * 1000 + index % 1000
