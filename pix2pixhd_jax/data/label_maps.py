"""Label maps, instance maps and photos on the host: the one way in, whoever reads them.

The input pipeline (through decode.py), synthesis, export and the editor all take their maps
through this module:

- `ModelMaps` reads a config's data settings once, checked (label_nc, input_nc, use_instance,
  the photos' channels and bit depth, unknown_label, the generator's size factor), and prepares
  maps given to a trained model: label ids checked, instance maps defaulted and matched, the
  reference's test-time scaling (`prepare`);
- `image_ids` reads the integer ids of a single-channel image (an RGB image only where its
  channels agree), for label and instance maps alike;
- `check_label_ids` is the one range check of label ids: ids past label_nc become
  data.unknown_label where it is set, or stop with the fix that suits who reads the map (a
  training config, the synthesize command's files, a model given arrays).
"""

import dataclasses
import logging
from typing import Any, Optional

import numpy as np
from PIL import Image

from pix2pixhd_jax.data.transforms import test_size, test_transform
from pix2pixhd_jax.errors import DataError, SynthesisError
from pix2pixhd_jax.models.pix2pixhd import size_divisor

# The single-channel image modes whose pixels are the ids themselves.
_ID_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "1")


def image_ids(img: Image.Image, where: str, what: str, fix: str) -> np.ndarray:
    """The (H, W) int32 ids of a single-channel image; RGB(A) only when its colour channels agree
    (a grayscale map saved as RGB). `what` names the map, `fix` ends the error of a colour one."""
    if img.mode in _ID_MODES:
        return np.asarray(img).astype(np.int32)
    if img.mode == "LA":
        return np.asarray(img)[..., 0].astype(np.int32)
    if img.mode in ("RGB", "RGBA"):
        arr = np.asarray(img)
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0].astype(np.int32)
        raise DataError(f"{where}: the {what} is a colour ({img.mode}) image; {fix}")
    raise DataError(f"{where}: the {what} has image mode {img.mode!r}; {fix}")


def check_label_ids(ids: np.ndarray, label_nc: int, where: str, reader: str = "config",
                    unknown_label: int = -1) -> np.ndarray:
    """(H, W) label ids checked against label_nc. With unknown_label >= 0, ids >= label_nc become
    that class (the log says how many pixels changed). reader: who reads the map, which decides
    the error's fix: 'config' (training: config keys, DataError), 'file' (a trained model reading
    a file: --unknown-label, DataError), 'model' (a trained model given arrays: the first bad
    pixel, SynthesisError)."""
    ids = np.asarray(ids)
    bad = (ids < 0) | (ids >= label_nc)
    if not bad.any():
        return ids
    top = int(ids.max())
    if top >= label_nc and unknown_label >= 0:
        logging.info("%s: %d pixels with ids >= %d (up to %d) set to class %d (data.unknown_label)", where,
                     int((ids >= label_nc).sum()), label_nc, top, unknown_label)
        ids = np.where(ids >= label_nc, unknown_label, ids)
        top, bad = int(ids.max()), ids < 0
        if not bad.any():
            return ids
    if reader == "model":
        y, x = (int(v) for v in np.argwhere(bad)[0])
        raise SynthesisError(f"{where}: label id {int(ids[y, x])} at pixel ({x}, {y}) is out of range for this model "
                             f"({int(bad.sum())} pixels out of range): it knows ids 0..{label_nc - 1} (label_nc="
                             f"{label_nc}). Remap those pixels to a class the model knows.")
    if top < label_nc:
        raise DataError(f"{where}: negative label id {int(ids.min())}; ids must be 0..{label_nc - 1}.")
    count = int((ids >= label_nc).sum())
    hint = " (255 is often an 'ignore' id)" if top == 255 else ""
    if reader == "file":
        raise DataError(
            f"{where}: label id {top} is out of range: the model was trained for {label_nc} classes (ids "
            f"0..{label_nc - 1}), and {count} pixels have ids >= {label_nc}{hint}. Pass --unknown-label K "
            f"to synthesize them as class K, or remap the map's ids to the model's classes.")
    raise DataError(
        f"{where}: label id {top} is out of range for label_nc={label_nc} "
        f"({count} pixels have ids >= {label_nc}){hint}. Set --config.data.unknown_label=K to map "
        f"every id >= {label_nc} to class K (e.g. 0), set --config.data.label_nc={top + 1}, or remap "
        f"the ids to 0..{label_nc - 1}.")


def photo_format(data_cfg) -> tuple:
    """(channels, bit depth) of the config's photos, checked."""
    channels, bit_depth = int(data_cfg.output_nc), int(data_cfg.image_bit_depth)
    if channels not in (1, 3):
        raise DataError(f"data.output_nc={channels}: photos have 1 (grayscale, depth, medical) or 3 (RGB) channels.")
    if bit_depth not in (8, 16):
        raise DataError(f"data.image_bit_depth={bit_depth}: photos are 8- or 16-bit.")
    if bit_depth == 16 and channels != 1:
        raise DataError("data.image_bit_depth=16 with data.output_nc=3: 16-bit photos must be single-channel (Pillow "
                        "reads no 16-bit colour images); set --config.data.output_nc=1, or use 8-bit RGB photos.")
    return channels, bit_depth


def unknown_label_of(data_cfg) -> int:
    """data.unknown_label, checked against label_nc (-1: off)."""
    k = int(data_cfg.unknown_label)
    if k >= 0 and data_cfg.label_nc and k >= data_cfg.label_nc:
        raise DataError(f"data.unknown_label={k} is not a class of label_nc={data_cfg.label_nc}; pick one of "
                        f"0..{data_cfg.label_nc - 1}, or -1 to stop on out-of-range ids.")
    return k


@dataclasses.dataclass(frozen=True)
class ModelMaps:
    """The maps a config's model takes, its data settings read once (`ModelMaps.of(config)`)."""

    label_nc: int  # label ids 0..label_nc-1; 0: RGB (input_nc channels) label images
    input_nc: int
    use_instance: bool
    channels: int  # the photos' (data.output_nc)
    bits: int  # the photos' bit depth (data.image_bit_depth)
    unknown_label: int  # -1: off
    divisor: int  # every size G takes is a multiple of it
    data: Any  # the data group (the test transform's settings)

    @classmethod
    def of(cls, config) -> "ModelMaps":
        data = config.data
        if data.label_nc < 0:
            raise DataError(f"data.label_nc={data.label_nc} must be >= 0 (0 = RGB label images).")
        channels, bits = photo_format(data)
        return cls(int(data.label_nc), int(data.input_nc), bool(data.use_instance), channels, bits,
                   unknown_label_of(data), size_divisor(config.model), data)

    @property
    def label_dtype(self) -> np.dtype:
        """How label ids travel (uint8, uint16 past 256 classes); label images are uint8."""
        return np.dtype(np.uint8 if self.label_nc <= 256 else np.uint16)

    @property
    def photo_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bits == 8 else np.uint16)

    # ----- maps given to a trained model -------------------------------------------------------
    def check_label(self, label, where: str = "label map") -> np.ndarray:
        """(H, W) int32 label ids in range, or the (H, W, 3) label image of a label_nc=0 model."""
        label = np.asarray(label)
        if self.label_nc == 0:
            if label.ndim != 3 or label.shape[-1] != 3:
                raise SynthesisError(f"{where}: shape {label.shape}; this model (label_nc=0) takes RGB label images "
                                     "(H, W, 3).")
            return label
        if label.ndim != 2:
            raise SynthesisError(f"{where}: shape {label.shape}; expected (H, W) label ids. Convert colour label "
                                 "images to ids first.")
        return check_label_ids(label, self.label_nc, where, "model").astype(np.int32)

    def instances(self, label: np.ndarray, inst: Optional[np.ndarray] = None) -> np.ndarray:
        """(H, W) int32 instance ids for a checked label map: `inst`, the same size, or without one
        every class region as one instance (id = label id; zeros for a label image)."""
        if inst is None:
            return np.zeros(label.shape[:2], np.int32) if self.label_nc == 0 else label.astype(np.int32)
        inst = np.asarray(inst, np.int32)
        if inst.shape != label.shape[:2]:
            raise SynthesisError(f"the instance map is {inst.shape[::-1]}, the label map {label.shape[1::-1]} "
                                 "(W, H): they must be the same size.")
        return inst

    def test_size(self, width: int, height: int) -> tuple:
        """(width, height) that `prepare` makes of a map of this size."""
        return test_size(width, height, self.data, self.divisor)

    def prepare(self, label: np.ndarray, inst: Optional[np.ndarray] = None, photo: Optional[np.ndarray] = None,
                where: str = "label map"):
        """(label, inst, photo) as the reference's test.py feeds them to its model: the config's
        resize_or_crop without random crop or flip (scale_width to load_size, ...; for 'none' the
        size rounded to the generator's factor), NEAREST for label and instance ids, BICUBIC for
        photos and RGB label images. inst and photo may be None."""
        label = test_transform(label, self.data, self.divisor, "ids" if self.label_nc else "image", where)
        if inst is not None:
            inst = test_transform(inst, self.data, self.divisor, "ids", where)
        if photo is not None:
            photo = test_transform(photo, self.data, self.divisor, "image", where)
        return label, inst, photo
