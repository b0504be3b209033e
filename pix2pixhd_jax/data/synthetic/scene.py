"""One scene: a street laid out, drawn and painted, its ids renumbered; a scene depends only on
(seed, phase, index, width, height)."""

import dataclasses
import math
import zlib

import numpy as np

from pix2pixhd_jax.data.synthetic.geometry import Canvas, make_camera, make_street
from pix2pixhd_jax.data.synthetic.layout import (
    draw_background, draw_buildings, draw_street, place_cars, place_persons, place_street_furniture)
from pix2pixhd_jax.data.synthetic.paint import PaintContext, render
from pix2pixhd_jax.data.synthetic.styles import CLASS_IDS, ID_TO_CLASS, INSTANCE_CLASSES, STYLES
from pix2pixhd_jax.errors import UserError


@dataclasses.dataclass
class StreetScene:
    """One generated street scene: its label map, instance map and photo, and each id's style."""

    label: np.ndarray  # (H, W) uint8 Cityscapes label ids
    inst: np.ndarray  # (H, W) uint16 instance ids (label*1000+k for car/person, else label id)
    image: np.ndarray  # (H, W, 3) uint8 photo
    # One dict per id present in `inst` (stuff regions too), sorted by id:
    # {"id", "label", "class", "style" (index into STYLES[class]), "style_name", "area" (pixels)}.
    instances: list


MIN_SIZE, MAX_SIZE = (128, 64), (4096, 2048)
_PHASE_CODES = {"train": 0, "test": 1, "val": 2}


def check_size(width, height):
    for name, value, lo, hi in (("width", width, MIN_SIZE[0], MAX_SIZE[0]),
                                ("height", height, MIN_SIZE[1], MAX_SIZE[1])):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise UserError(f"{name}={value!r} is out of range: use an integer in [{lo}, {hi}]")


def check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserError(f"{name}={value!r} is invalid: use a non-negative integer")


def _phase_code(phase: str) -> int:
    # crc32 is stable across processes and Python versions (unlike hash()).
    return _PHASE_CODES.get(phase, zlib.crc32(phase.encode()) + len(_PHASE_CODES))


def _finalize_ids(ids: np.ndarray, styles: dict):
    """Renumber instances to k = 0, 1, ... per class (occluded ones dropped); build metadata."""
    counts = np.bincount(ids.ravel())
    present = np.flatnonzero(counts)
    relabel = np.zeros(counts.size, np.int32)
    labels = np.zeros(counts.size, np.int32)
    next_k = {}
    instances = []
    for old in present.tolist():  # ascending: order within a class is kept
        label = old if old < 1000 else old // 1000
        new = old
        if old >= 1000:
            new = label * 1000 + next_k.get(label, 0)
            next_k[label] = next_k.get(label, 0) + 1
        relabel[old], labels[old] = new, label
        cls, style = ID_TO_CLASS[label], styles[old]
        instances.append({"id": new, "label": label, "class": cls, "style": style,
                          "style_name": STYLES[cls][style], "area": int(counts[old])})
    return relabel[ids].astype(np.uint16), labels[ids].astype(np.uint8), instances


def generate_scene(width: int, height: int, seed: int = 0, index: int = 0, phase: str = "train") -> StreetScene:
    """One synthetic street scene; depends only on (seed, phase, index, width, height)."""
    check_size(width, height)
    check_count("seed", seed)
    check_count("index", index)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _phase_code(phase), int(index)]))
    cam = make_camera(rng, width, height)
    street = make_street(rng, cam)
    cv = Canvas(width, height)
    # Stuff classes: one id, hence one style, per image.
    for cls in CLASS_IDS:
        if cls not in INSTANCE_CLASSES:
            cv.new_id(cls, rng.integers(len(STYLES[cls])))

    draw_background(cv, cam)
    for side in (-1, 1):
        draw_buildings(cv, cam, rng, street, side, cv.styles[CLASS_IDS["building"]])
    draw_street(cv, cam, rng, street)
    objects = []
    place_street_furniture(cv, cam, rng, street, objects)
    place_cars(cv, cam, rng, street, objects)
    place_persons(cv, cam, rng, street, objects)
    for _, draw in sorted(objects, key=lambda o: -o[0]):  # stable: ties keep placement order
        draw()

    ids = np.asarray(cv.ids)
    unit = math.sqrt(width * height / (512.0 * 256.0))
    image = render(cv, ids, PaintContext(cam, rng, unit))
    inst, label, instances = _finalize_ids(ids, cv.styles)
    return StreetScene(label=label, inst=inst, image=image, instances=instances)
