"""Decoding one example's images (numpy + Pillow, no TensorFlow), checked by data/label_maps.py.

The record format shared by every reader and the TFDS builders is a dict of
encoded image bytes: {'label', 'inst', 'image'} plus, for error messages, the
file each came from ({'label_file', 'inst_file', 'image_file'}). Empty bytes
mean absent (no instance map; the label inside an A|B image).
"""

import io
import logging
import re
import threading

import numpy as np
from PIL import Image, UnidentifiedImageError

from pix2pixhd_jax.data.label_maps import check_label_ids, image_ids
from pix2pixhd_jax.errors import DataError

_BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")
# What to do with a colour label map, by who reads it: a training config, a trained model, make-instances.
COLOUR_LABEL_FIXES = {
    "config": "expected single-channel label ids (8-bit PNG). Convert colours to ids (Cityscapes: use "
              "*_gtFine_labelIds.png, not *_color.png), or set --config.data.label_nc=0 to feed RGB label images as "
              "they are.",
    "model": "this model was trained on label ids (8-bit single-channel PNG): convert the colours to ids (Cityscapes: "
             "use *_gtFine_labelIds.png, not *_color.png). Only a model trained with data.label_nc=0 takes colour "
             "label images.",
    "ids": "make-instances reads label ids (8-bit single-channel PNG): convert the colours to ids (Cityscapes: use "
           "*_gtFine_labelIds.png, not *_color.png).",
}
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
        # Pillow names the in-memory buffer (<_io.BytesIO object at 0x...>), not the file: the message names it.
        reason = ("not a format Pillow reads" if isinstance(e, UnidentifiedImageError)
                  else _BUFFER_REPR.sub("the file", str(e)))
        raise DataError(
            f"{where}: cannot decode the image ({reason}); the file is truncated or not an image. "
            "Re-export or re-download it, or remove it from the dataset."
        ) from None
    return img


def label_ids(data: bytes, where: str, reader: str = "config") -> np.ndarray:
    """The (H, W) int32 ids of a single-channel label map, unchecked against any label_nc. reader:
    who reads it ('config': training, 'model': a trained model, 'ids': make-instances), which
    decides the fix a colour map's error gives."""
    return image_ids(open_image(data, where), where, "label map", COLOUR_LABEL_FIXES[reader])


def decode_label(data: bytes, where: str, label_nc: int, unknown_label: int = -1, input_nc: int = 3,
                 for_model: bool = False):
    """Label ids (H, W) int32 checked against label_nc, or a PIL image (RGB, or L when input_nc
    is 1) when label_nc == 0. With unknown_label >= 0, ids >= label_nc become that class and the
    log says how many pixels of the file changed. for_model: the map is for a trained model
    (synthesize), whose class count is fixed; the error says so instead of advising config keys."""
    if label_nc == 0:
        return open_image(data, where).convert("L" if input_nc == 1 else "RGB")
    ids = label_ids(data, where, "model" if for_model else "config")
    return check_label_ids(ids, label_nc, where, "file" if for_model else "config", unknown_label)


def decode_instances(data: bytes, where: str) -> np.ndarray:
    """Instance ids (H, W) int32 from a 16-bit PNG; 8-bit maps are accepted with a warning."""
    img = open_image(data, where)
    ids = image_ids(
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


_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ONE_CHANNEL = ("L", "LA", "1") + _SIXTEEN_BIT


def decode_photo(data: bytes, where: str, channels: int = 3, bit_depth: int = 8) -> Image.Image:
    """A photo as the config expects it (data.output_nc, data.image_bit_depth): a PIL image in mode
    RGB (3 channels, 8 bits), L (1, 8) or F (1, 16: the 16-bit levels as floats).

    With 3 channels, palette, RGBA (composited on black), CMYK and grayscale photos become RGB, as
    the reference converts every photo; anything else that disagrees with the config (16-bit
    photos in an 8-bit config, 8-bit ones in a 16-bit config, colour photos for one channel)
    stops with the file, what it holds and the setting to change."""
    img = open_image(data, where)
    sixteen = img.mode in _SIXTEEN_BIT
    if sixteen and img.mode == "I" and int(np.asarray(img).max()) > 65535:
        raise DataError(f"{where}: a 32-bit integer image (values up to {int(np.asarray(img).max())}); photos "
                        "must be 8-bit, or 16-bit single-channel with data.image_bit_depth=16.")
    if bit_depth == 16:
        if not sixteen:
            raise DataError(f"{where}: an 8-bit photo (mode {img.mode}), but data.image_bit_depth=16 expects 16-bit "
                            "single-channel images. Set --config.data.image_bit_depth=8 (with data.output_nc "
                            f"{1 if img.mode in _ONE_CHANNEL else 3}), or write every photo as a 16-bit PNG; "
                            "8-bit photos are not rescaled silently.")
        return Image.fromarray(np.asarray(img).astype(np.float32), "F")
    if sixteen:
        raise DataError(f"{where}: a 16-bit photo (mode {img.mode}), but data.image_bit_depth=8. Set "
                        "--config.data.image_bit_depth=16 --config.data.output_nc=1 to train on its 16 bits, or "
                        "convert the photos to 8 bits.")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on black, so transparent pixels do not carry hidden colours.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba).convert("L" if img.mode == "LA" else "RGB")
    if channels == 1:
        if img.mode not in _ONE_CHANNEL:
            raise DataError(f"{where}: a colour photo (mode {img.mode}), but data.output_nc=1 expects single-channel "
                            "photos. Set --config.data.output_nc=3, or convert the photos to grayscale.")
        return img.convert("L")
    return img.convert("RGB")


def decode_example(record: dict, label_nc: int, use_instance: bool, ab_direction=None, *, channels: int = 3,
                   bit_depth: int = 8, unknown_label: int = -1, input_nc: int = 3):
    """(label, inst, photo) as (ids array | PIL image, int32 array | None, PIL image), sizes checked;
    the keywords are the data config's output_nc, image_bit_depth, unknown_label and input_nc."""
    if ab_direction:
        ab = decode_photo(record["image"], record["image_file"], channels, bit_depth)
        w, h = ab.size
        if w % 2:
            raise DataError(
                f"{record['image_file']}: an A|B image must have an even width, got {w}; "
                "A and B are the two halves of the image."
            )
        left, right = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        label, photo = (left, right) if ab_direction == "AtoB" else (right, left)
        return label, None, photo
    label = decode_label(record["label"], record["label_file"], label_nc, unknown_label, input_nc)
    photo = decode_photo(record["image"], record["image_file"], channels, bit_depth)
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
