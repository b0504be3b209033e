"""Pictures of inputs and outputs: label colours, instance colours, boundaries, photos.

numpy + Pillow only, so training (no TensorFlow) and the data tools share it.
"""

import numpy as np
from PIL import Image

from pix2pixhd_jax.data.cityscapes_labels import palette
from pix2pixhd_jax.models.pix2pixhd import instance_boundaries
from pix2pixhd_jax.models.pixels import to_levels, view_uint8


def colorize_labels(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 in Cityscapes colours."""
    return palette(256)[np.clip(label_ids, 0, 255)]


def colorize_instances(inst: np.ndarray) -> np.ndarray:
    """(H, W) instance ids -> (H, W, 3) uint8, one hashed colour per id."""
    ids = inst.astype(np.uint32)
    # A multiplicative hash spreads neighbouring ids (26000, 26001) to distant colours.
    h = (ids * np.uint32(2654435761)) >> np.uint32(8)
    rgb = np.stack([(h >> s) & 255 for s in (0, 8, 16)], axis=-1).astype(np.uint8)
    return rgb // 2 + 64


def gray(mask: np.ndarray) -> np.ndarray:
    """(H, W[, 1]) in [0, 1] -> (H, W, 3) uint8."""
    m = np.asarray(mask, np.float32).reshape(mask.shape[:2])
    return np.repeat((np.clip(m, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def grid(rows, pad: int = 2) -> np.ndarray:
    """A list of rows, each a list of equally sized (H, W, 3) uint8 panels, as one image."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = panel
    return out


def label_panel(batch: dict, i: int) -> np.ndarray:
    """Row i's label as a picture: Cityscapes colours of its ids, or the label image."""
    if "label_ids" in batch:
        return colorize_labels(batch["label_ids"][i])
    return view_uint8(batch["label"][i])


def photo_panel(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """A photo (any channels) as an 8-bit RGB picture: integer levels (8 or 16 bits) as they are, a
    generated [-1, 1] image as it is written (to_levels: truncated)."""
    image = np.asarray(image)
    return view_uint8(image if np.issubdtype(image.dtype, np.integer) else to_levels(image, bits))


def boundary_panel(inst: np.ndarray) -> np.ndarray:
    """The instance boundary map G and D see (built on the device from the ids), as a picture."""
    return gray(instance_boundaries(np.asarray(inst)))


def batch_panels(batch: dict, max_rows: int = 8):
    """Rows of (label colours | instances | boundaries | photo) for a pipeline batch."""
    n = min(len(batch["image"]), max_rows)
    rows = []
    for i in range(n):
        row = [label_panel(batch, i)]
        if "inst" in batch:
            row += [colorize_instances(batch["inst"][i]), boundary_panel(batch["inst"][i])]
        row.append(photo_panel(batch["image"][i]))
        rows.append(row)
    return rows


def png_image(levels: np.ndarray) -> Image.Image:
    """A PIL image of (H, W[, C]) uint8 or uint16 levels: RGB, L, or a 16-bit grayscale (I;16)."""
    levels = np.asarray(levels)
    if levels.ndim == 3 and levels.shape[-1] == 1:
        levels = levels[..., 0]
    return Image.fromarray(levels)


def save_png(path: str, image: np.ndarray):
    png_image(image).save(path)
