"""Decoding and validating one example's images (numpy + Pillow, no TensorFlow).

The record format shared by every reader and the TFDS builders is a dict of
encoded image bytes: {'label', 'inst', 'image'} plus, for error messages, the
file each came from ({'label_file', 'inst_file', 'image_file'}). Empty bytes
mean absent (no instance map; the label inside an A|B image).
"""

import io
import logging
import threading

import numpy as np
from PIL import Image

from pix2pixhd_jax.errors import DataError

_warned = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str):
    with _warned_lock:
        if key not in _warned:
            _warned.add(key)
            logging.warning(message)


def open_image(data: bytes, where: str) -> Image.Image:
    """A fully loaded PIL image, or a DataError naming the file."""
    if not data:
        raise DataError(f"{where}: the file is empty; re-export it or remove it from the dataset.")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"{where}: cannot decode the image ({e}); the file is truncated or not an image. "
            "Re-export or re-download it, or remove it from the dataset."
        ) from None
    return img


def _single_channel(img: Image.Image, where: str, what: str, fix: str) -> np.ndarray:
    """The integer ids of a single-channel image; RGB only when all channels agree."""
    if img.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "1"):
        return np.asarray(img).astype(np.int32)
    if img.mode == "LA":
        return np.asarray(img)[..., 0].astype(np.int32)
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img)
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0].astype(np.int32)
        raise DataError(f"{where}: the {what} is a colour ({img.mode}) image; {fix}")
    raise DataError(f"{where}: the {what} has image mode {img.mode!r}; {fix}")


def decode_label(data: bytes, where: str, label_nc: int):
    """Label ids (H, W) int32 checked against label_nc, or a PIL RGB image when label_nc == 0."""
    img = open_image(data, where)
    if label_nc == 0:
        return img.convert("RGB")
    ids = _single_channel(
        img,
        where,
        "label map",
        "expected single-channel label ids (8-bit PNG). Convert colours to ids "
        "(Cityscapes: use *_gtFine_labelIds.png, not *_color.png), or set "
        "--config.data.label_nc=0 to feed RGB label images as they are.",
    )
    top = int(ids.max())
    if top >= label_nc:
        count = int((ids >= label_nc).sum())
        hint = " (255 is often an 'ignore' id: remap it to a real class such as 0)" if top == 255 else ""
        raise DataError(
            f"{where}: label id {top} is out of range for label_nc={label_nc} "
            f"({count} pixels have ids >= {label_nc}){hint}. "
            f"Set --config.data.label_nc={top + 1} or remap the ids to 0..{label_nc - 1}."
        )
    if int(ids.min()) < 0:
        raise DataError(f"{where}: negative label id {int(ids.min())}; ids must be 0..{label_nc - 1}.")
    return ids


def decode_instances(data: bytes, where: str) -> np.ndarray:
    """Instance ids (H, W) int32 from a 16-bit PNG; 8-bit maps are accepted with a warning."""
    img = open_image(data, where)
    ids = _single_channel(
        img,
        where,
        "instance map",
        "expected single-channel instance ids (16-bit PNG, label*1000+k as in Cityscapes' "
        "*_gtFine_instanceIds.png). Write the ids as a grayscale PNG, or train without "
        "instance maps: --config.data.use_instance=False.",
    )
    if img.mode in ("L", "P", "1"):
        # 8 bits cannot hold label*1000+k, but boundaries and the encoder's pooling
        # only need distinct instances to have distinct ids, which 8 bits can do.
        _warn_once(
            "8bit-inst",
            f"{where}: 8-bit instance map; accepted because boundaries and instance pooling only "
            "need distinct ids per instance, but ids cannot follow Cityscapes' label*1000+k, so "
            "tools that read the class from an instance id will not work with these maps.",
        )
    return ids


def decode_photo(data: bytes, where: str) -> Image.Image:
    """An RGB PIL image; grayscale, palette, RGBA, CMYK and 16-bit photos are converted."""
    img = open_image(data, where)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        scale = 257.0 if arr.max() > 255 else 1.0
        img = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode != "RGB":
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            # Composite on black, so transparent pixels do not carry hidden colours.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(background, rgba)
        img = img.convert("RGB")
    return img


def decode_example(record: dict, label_nc: int, use_instance: bool, ab_direction=None):
    """(label, inst, photo) as (ids array | PIL RGB, int32 array | None, PIL RGB), sizes checked."""
    if ab_direction:
        ab = decode_photo(record["image"], record["image_file"])
        w, h = ab.size
        if w % 2:
            raise DataError(
                f"{record['image_file']}: an A|B image must have an even width, got {w}; "
                "A and B are the two halves of the image."
            )
        left, right = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        label, photo = (left, right) if ab_direction == "AtoB" else (right, left)
        return label, None, photo
    label = decode_label(record["label"], record["label_file"], label_nc)
    photo = decode_photo(record["image"], record["image_file"])
    inst = None
    if use_instance:
        if not record.get("inst"):
            raise DataError(
                f"{record['label_file']}: no instance map for this example, but instance maps are on "
                "(data.use_instance=True). Provide it, or set --config.data.use_instance=False."
            )
        inst = decode_instances(record["inst"], record["inst_file"])
    label_hw = label.shape if isinstance(label, np.ndarray) else label.size[::-1]
    photo_hw = photo.size[::-1]
    if tuple(label_hw) != tuple(photo_hw):
        raise DataError(
            f"{record['label_file']} is {label_hw[1]}x{label_hw[0]} but its photo "
            f"{record['image_file']} is {photo_hw[1]}x{photo_hw[0]} (WxH); a label map and its photo "
            "must have the same size. Resize the label map with nearest-neighbour to the photo's size."
        )
    if inst is not None and inst.shape != tuple(label_hw):
        raise DataError(
            f"{record['inst_file']} is {inst.shape[1]}x{inst.shape[0]} but its label map "
            f"{record['label_file']} is {label_hw[1]}x{label_hw[0]} (WxH); they must match."
        )
    return label, inst, photo
