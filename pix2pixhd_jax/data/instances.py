"""Instance maps made from label maps, for datasets without them (`pix2pixhd-jax make-instances`).

Cityscapes' convention: every connected region (4-neighbour connectivity) of a thing class
becomes an object, id class*1000+k (k = 0, 1, ... in scan order of the region's first pixel);
stuff pixels keep their class id. Objects of one class that touch are one region, so they
merge into one instance: what the real instance maps tell apart and a label map cannot.
The editor makes the same maps for uploads without one.

A 16-bit PNG holds class*1000+k only for classes up to 64. For a dataset with thing classes
above that (ADE20K's run to 150) the written maps number the objects 1000, 1001, ... across
the image instead: ids >= 1000 still mark objects and still tell them apart, which is all the
instance boundaries and the feature encoder's pooling read (an object's class always comes
from the label map, never from its id).
"""

import io
import os
from typing import Iterable, Optional

import numpy as np
from PIL import Image
from scipy import ndimage

from pix2pixhd_jax import atomic
from pix2pixhd_jax.data import ade20k_labels, cityscapes_labels, decode
from pix2pixhd_jax.data.readers import list_images, scene_key
from pix2pixhd_jax.errors import DataError

MAX_OBJECTS_PER_CLASS = 1000  # class*1000+k: k must stay below 1000
MAX_CLASS_IN_16_BITS = (np.iinfo(np.uint16).max - MAX_OBJECTS_PER_CLASS + 1) // 1000  # 64: 64999 fits
THINGS = {
    "cityscapes": frozenset(label.id for label in cityscapes_labels.LABELS if label.has_instances),
    "ade20k": ade20k_labels.THING_IDS,
}


def dataset_classes(data_cfg) -> tuple:
    """({class id: name}, thing class ids) of the dataset a config reads: ADE20K's for
    dataset_format 'ade20k' (or 151 classes), Cityscapes' otherwise."""
    if data_cfg.dataset_format == "ade20k" or int(data_cfg.label_nc) == ade20k_labels.NUM_LABEL_IDS:
        return ade20k_labels.ID_TO_NAME, THINGS["ade20k"]
    return cityscapes_labels.ID_TO_NAME, THINGS["cityscapes"]


def instances_from_labels(label: np.ndarray, things: Iterable[int] = THINGS["cityscapes"],
                          numbering: str = "class") -> np.ndarray:
    """(H, W) instance ids (int32) from (H, W) label ids; see the module docstring.
    numbering 'class': class*1000+k; 'image': 1000+n, n counting the objects of all classes."""
    if numbering not in ("class", "image"):
        raise ValueError(f"numbering {numbering!r}: 'class' or 'image'.")
    label = np.asarray(label)
    inst = label.astype(np.int32).copy()
    first = 1000
    for cls in np.intersect1d(np.unique(label), np.fromiter(things, np.int64)):
        components, n = ndimage.label(label == cls)
        keep = components > 0
        if numbering == "class":
            # Beyond 1000 objects of a class the ids would run into the next class: the rest share k=999.
            inst[keep] = int(cls) * 1000 + np.minimum(components[keep] - 1, MAX_OBJECTS_PER_CLASS - 1)
        else:
            inst[keep] = first + components[keep] - 1
            first += n
    return inst


def png_numbering(things: Iterable[int]) -> str:
    """The numbering a 16-bit PNG can hold for these thing classes (see the module docstring)."""
    return "class" if max(things, default=0) <= MAX_CLASS_IN_16_BITS else "image"


def thing_classes(dataset: Optional[str] = None, things: Optional[Iterable[int]] = None) -> frozenset:
    if things is not None:
        return frozenset(int(t) for t in things)
    if dataset not in THINGS:
        raise DataError(f"--dataset {dataset!r}: no thing-class table for it (tables: {', '.join(THINGS)}); give "
                        "the thing classes' ids with --things 24,25,26.")
    return THINGS[dataset]


def write_instances(label: str, out: str, things: frozenset) -> list:
    """16-bit instance PNGs for a label map file or every one in a folder; returns the written paths.
    Each is named after its label map's scene, `<scene>_instanceIds.png`."""
    files = list_images(label, "label maps", "--label") if os.path.isdir(label) else [label]
    if not os.path.isfile(files[0]):
        raise DataError(f"--label {label}: no such file or folder (the label maps).")
    atomic.output_folder(out)
    written, numbering = [], png_numbering(things)
    for path in files:
        with open(path, "rb") as f:
            ids = decode.label_ids(f.read(), path, "ids")
        inst = instances_from_labels(ids, things, numbering)
        if inst.max() > np.iinfo(np.uint16).max:  # only 1000+n can get there: more than 64536 objects
            raise DataError(f"{path}: {int(inst.max()) - 999} objects are more than a 16-bit instance PNG can "
                            "number (ids up to 65535).")
        target = os.path.join(out, f"{scene_key(path)}_instanceIds.png")
        atomic.write_bytes(target, _png16(inst))
        written.append(target)
    return written


def _png16(ids: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(ids.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def compare(made: np.ndarray, true: np.ndarray, label: np.ndarray, things: frozenset) -> dict:
    """How instances made from a label map compare with the true ones (thing classes only): how
    many true objects there are, how many made, how many true objects share their made instance
    with another true object (merged: they touch, so the label map shows one region), and how
    many are cut into several made instances (an occluder splits them)."""
    is_thing = np.isin(label, np.fromiter(things, np.int64))
    true_ids = np.unique(true[is_thing])
    merged = split = 0
    for t in true_ids:
        made_ids = np.unique(made[(true == t) & is_thing])
        others = np.unique(true[np.isin(made, made_ids) & is_thing])
        merged += len(others) > 1
        split += len(made_ids) > 1
    return {"true_objects": int(len(true_ids)), "made_objects": int(len(np.unique(made[is_thing]))),
            "merged_true_objects": int(merged), "split_true_objects": int(split)}
