"""The reference's preprocessing (data/base_dataset.py), on PIL images and id arrays.

One set of random parameters (crop position, flip) is drawn per example and
applied to the label map, the instance map and the photo alike, so they stay
aligned. Labels and instances are resized with NEAREST, photos (and RGB labels
when label_nc == 0) with BICUBIC, through Pillow as the reference does.

Modes (data.resize_or_crop): resize_and_crop, scale_width, scale_width_and_crop,
crop, none.
"""

import copy
import dataclasses

import numpy as np
from PIL import Image

from pix2pixhd_jax.errors import DataError

MODES = ("resize_and_crop", "scale_width", "scale_width_and_crop", "crop", "none")


@dataclasses.dataclass(frozen=True)
class TransformParams:
    crop_x: int
    crop_y: int
    flip: bool


def check_mode(mode: str):
    if mode not in MODES:
        raise DataError(f"data.resize_or_crop={mode!r} is not one of {', '.join(MODES)}.")


def resized_size(w: int, h: int, mode: str, load_size: int) -> tuple:
    """(w, h) after the resize step, before cropping."""
    if "resize" in mode:
        return load_size, load_size
    if "scale_width" in mode and w != load_size:
        return load_size, int(load_size * h / w)
    return w, h


def get_params(rng: np.random.Generator, w: int, h: int, mode: str, load_size: int, fine_size: int):
    """Random crop position and flip for an image of size (w, h), as the reference draws them."""
    new_w, new_h = resized_size(w, h, mode, load_size)
    x = int(rng.integers(0, max(0, new_w - fine_size) + 1))
    y = int(rng.integers(0, max(0, new_h - fine_size) + 1))
    return TransformParams(crop_x=x, crop_y=y, flip=bool(rng.random() > 0.5))


def _make_multiple(w: int, h: int, base: int) -> tuple:
    return int(round(w / base) * base), int(round(h / base) * base)


def output_size(w: int, h: int, mode: str, load_size: int, fine_size: int, divisor: int) -> tuple:
    """(w, h) that `apply` produces for an input of size (w, h)."""
    w2, h2 = resized_size(w, h, mode, load_size)
    if "crop" in mode and (w2 > fine_size or h2 > fine_size):
        w2, h2 = fine_size, fine_size
    if mode == "none":
        w2, h2 = _make_multiple(w2, h2, divisor)
    return w2, h2


def resize_step(img: Image.Image, mode: str, load_size: int, divisor: int, method) -> Image.Image:
    """The deterministic part of a mode: its resize, and for 'none' the rounding of the size to
    the generator's factor (no mode both crops and rounds, so this part can run first and once:
    data/prepared.py writes its result)."""
    w, h = img.size
    new_w, new_h = resized_size(w, h, mode, load_size)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), method)
    if mode == "none":
        w2, h2 = _make_multiple(*img.size, divisor)
        if (w2, h2) != img.size:
            img = img.resize((w2, h2), method)
    return img


def crop_window(w: int, h: int, params: TransformParams, mode: str, fine_size: int, where: str):
    """(x, y, w, h) of the random crop of a resized (w, h) image, or None when the mode does not
    crop it (no crop in the mode, or the image fits the crop)."""
    if "crop" not in mode or (w <= fine_size and h <= fine_size):
        return None
    if w < fine_size or h < fine_size:
        # The reference would pad the crop with zeros (label 0, black photo) here.
        raise DataError(
            f"{where}: after '{mode}' the image is {w}x{h}, smaller than the "
            f"{fine_size}x{fine_size} crop (data.fine_size) in one direction. Lower "
            "data.fine_size or raise data.load_size."
        )
    return params.crop_x, params.crop_y, fine_size, fine_size


def apply(img: Image.Image, params: TransformParams, mode: str, load_size: int, fine_size: int,
          divisor: int, flip: bool, method, where: str) -> Image.Image:
    """Resize, crop, round to the size divisor (mode 'none') and flip one image."""
    img = resize_step(img, mode, load_size, divisor, method)
    window = crop_window(*img.size, params, mode, fine_size, where)
    if window is not None:
        x, y, cw, ch = window
        img = img.crop((x, y, x + cw, y + ch))
    if flip and params.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def image_levels(img: Image.Image) -> np.ndarray:
    """(H, W, C) integer levels of a photo or label image, as the model's input carries them: uint8
    for modes RGB and L, uint16 for mode F (a 16-bit image's levels as floats: BICUBIC's overshoot
    clipped to the range, as 8-bit images clip, and its values between levels rounded to the
    nearest level)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = np.floor(np.clip(arr, 0, 65535) + 0.5).astype(np.uint16)
    else:
        arr = arr.astype(np.uint8, copy=False)
    return arr[..., None] if arr.ndim == 2 else arr


def check_divisible(w: int, h: int, divisor: int, mode: str, where: str):
    if w % divisor or h % divisor:
        raise DataError(
            f"{where}: after '{mode}' the example is {w}x{h}, which is not divisible by {divisor} "
            "(2**(n_downsample_global + n_local_enhancers) for this generator). Choose "
            f"data.load_size / data.fine_size as multiples of {divisor}, or use "
            "--config.data.resize_or_crop=none, which rounds each size to a multiple."
        )


def transform_example(label, inst, photo, params: TransformParams, cfg, divisor: int, train: bool,
                      where: str):
    """Apply one set of params to (label, inst, photo).

    label: (H, W) int ids or a PIL image (label_nc == 0); inst: (H, W) int ids or None;
    photo: PIL RGB, L or F (16-bit). Returns numpy arrays: label (H, W) int32 ids or (H, W, C)
    uint8 levels; inst (H, W) int32 or None; photo (H, W, C) uint8 levels (uint16 for 16-bit photos).
    """
    args = dict(mode=cfg.resize_or_crop, load_size=cfg.load_size, fine_size=cfg.fine_size,
                divisor=divisor, flip=train and not cfg.no_flip, where=where)

    def ids(arr):
        out = apply(Image.fromarray(arr.astype(np.int32), "I"), params, method=Image.NEAREST, **args)
        return np.asarray(out, dtype=np.int32)

    def image(img):
        out = apply(img, params, method=Image.BICUBIC, **args)
        return image_levels(out)

    out_photo = image(photo)
    out_label = image(label) if isinstance(label, Image.Image) else ids(label)
    out_inst = None if inst is None else ids(inst)
    h, w = out_photo.shape[:2]
    check_divisible(w, h, divisor, cfg.resize_or_crop, where)
    return out_label, out_inst, out_photo


def inference_mode(mode: str, load_size: int, fine_size: int) -> tuple:
    """(mode, load_size, fine_size) that keep a training mode's scale but drop its random crop,
    so encoding and synthesis see whole images (as the reference's test runs are meant to)."""
    if mode == "scale_width_and_crop":
        return "scale_width", load_size, fine_size
    if mode == "resize_and_crop":
        return mode, load_size, load_size
    if mode == "crop":
        return "none", load_size, fine_size
    return mode, load_size, fine_size


def test_size(w: int, h: int, data_cfg, divisor: int) -> tuple:
    """(w, h) of a (w, h) input after the reference's test transform for this data config."""
    mode, load_size, fine_size = inference_mode(data_cfg.resize_or_crop, data_cfg.load_size, data_cfg.fine_size)
    return output_size(w, h, mode, load_size, fine_size, divisor)


def test_transform(array: np.ndarray, data_cfg, divisor: int, kind: str, where: str = "input") -> np.ndarray:
    """One input as the reference's test.py feeds it: the config's resize_or_crop without its random
    crop and flip (inference_mode), then, for 'none', the size rounded to a multiple of the
    generator's factor. kind 'ids': label or instance ids, NEAREST, int32 out; 'image': a photo or
    label image, BICUBIC, as uint8 levels (H, W[, 3]) or 16-bit levels as float32 (H, W[, 1]),
    returned in the same kind."""
    mode, load_size, fine_size = inference_mode(data_cfg.resize_or_crop, data_cfg.load_size, data_cfg.fine_size)
    array = np.asarray(array)
    if kind == "ids":
        img, method = Image.fromarray(array.astype(np.int32), "I"), Image.NEAREST
    elif kind == "image":
        method = Image.BICUBIC
        squeeze = array.ndim == 3 and array.shape[-1] == 1
        plane = array[..., 0] if squeeze else array
        img = Image.fromarray(plane, "F") if plane.dtype == np.float32 else Image.fromarray(plane.astype(np.uint8))
    else:
        raise ValueError(f"kind={kind!r} is not 'ids' or 'image'")
    out = np.asarray(apply(img, TransformParams(0, 0, False), mode, load_size, fine_size, divisor, False, method,
                           where))
    if kind == "ids":
        return out.astype(np.int32)
    out = np.clip(out, 0, 65535).astype(np.float32) if img.mode == "F" else out
    return out[..., None] if squeeze else out


def inference_config(config):
    """A copy of `config` whose data group reads whole images (see inference_mode)."""
    config = copy.deepcopy(config)
    data = config.data
    data.resize_or_crop, data.load_size, data.fine_size = inference_mode(data.resize_or_crop, data.load_size,
                                                                         data.fine_size)
    return config
