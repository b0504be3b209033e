"""Readers for every dataset layout a user brings, into one list of examples.

Each reader returns a `Source`: a sorted, validated list of `Example`s whose
fields are file paths. The input pipeline reads the files' bytes into the
common record format (see `records.py`), which the TFDS builders share.

Layouts:
  aligned     the reference's folders: {phase}_label, {phase}_inst, {phase}_img
              (or {phase}_A / {phase}_B when label_nc == 0), paired by sorted name.
  cityscapes  raw Cityscapes trees: gtFine/{split}/{city}/*_gtFine_{labelIds,instanceIds}.png
              and leftImg8bit/{split}/{city}/*_leftImg8bit.png; 'test' reads 'val'.
  ade20k      the scene-parsing release ADEChallengeData2016: images/{training,validation}/*.jpg
              and annotations/{training,validation}/*.png (ids 0..150, 0 = other); no
              instance maps; 'test' reads 'validation'.
  ab          pix2pix's A|B side-by-side images in {root}/{phase}/ (label_nc == 0).
"""

import dataclasses
import os
import re
from typing import Optional

from pix2pixhd_jax.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

# Suffixes that name a file's role rather than its scene; stripped before the
# label/instance/photo names of one example are compared.
_ROLE_SUFFIX = re.compile(
    r"(_gtFine|_gtCoarse)?_(labelIds|instanceIds|color|leftImg8bit|label|labels|inst|instance|"
    r"instances|img|image|photo|A|B)$",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Example:
    """One training example: the files that hold it (inst is None without instance maps)."""

    name: str
    label: Optional[str]
    inst: Optional[str]
    image: str


@dataclasses.dataclass(frozen=True)
class Source:
    """A readable dataset split.

    `ab_direction` is set for pix2pix side-by-side files: each `image` holds
    A|B, and 'AtoB' means the left half is the input (label) and the right half the photo.
    """

    description: str
    examples: tuple
    ab_direction: Optional[str] = None

    def __len__(self):
        return len(self.examples)


def scene_key(path: str) -> str:
    """The part of a file name that names the scene: 'aachen_000000_000019'."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return _ROLE_SUFFIX.sub("", stem)


def list_images(folder: str, what: str, flag: Optional[str] = None) -> list:
    """Sorted image files of a folder, or a DataError saying what was expected there. flag: the
    command-line flag that named the folder (the fix names it); default the config's data.dataroot."""
    where = (flag + ("" if flag.endswith(":") else " ") + folder) if flag else folder
    if not os.path.isdir(folder):
        raise DataError(f"{where}: folder not found; expected it to hold the {what}.")
    files = sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
    )
    if not files:
        fix = f"give {flag} the folder that holds them" if flag else "point data.dataroot at the right folder"
        raise DataError(f"{where}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); put the {what} there "
                        f"or {fix}.")
    return files


def _pair(groups: dict, check_names: bool) -> list:
    """Zip equally long sorted file lists, checking that each row names one scene."""
    counts = {role: len(files) for role, files in groups.items()}
    if len(set(counts.values())) > 1:
        keys = {role: {scene_key(f): f for f in files} for role, files in groups.items()}
        roles = list(groups)
        for role in roles:
            for other in roles:
                missing = sorted(set(keys[role]) - set(keys[other]))
                if missing:
                    first = keys[role][missing[0]]
                    raise DataError(
                        f"file counts differ ({', '.join(f'{r}: {n}' for r, n in counts.items())}); "
                        f"{first} has no partner among the {other} files (first of {len(missing)}). "
                        "Every example needs one file in each folder; add or remove files so they pair up."
                    )
        raise DataError(f"file counts differ: {counts}; every example needs one file in each folder.")
    rows = list(zip(*groups.values()))
    if check_names:
        for row in rows:
            keys = [scene_key(f) for f in row]
            if len(set(keys)) > 1:
                raise DataError(
                    "files paired by sorted order name different scenes: "
                    + ", ".join(row)
                    + f" (keys {keys}). Rename them so that they match after removing role suffixes "
                    "such as _label/_inst/_img/_gtFine_labelIds/_leftImg8bit, or set "
                    "data.check_names=False if the sorted order is right."
                )
    return rows


def read_aligned(root: str, phase: str, label_nc: int, use_instance: bool, check_names: bool = True) -> Source:
    """The reference's 'aligned' folders: {phase}_label/_inst/_img, or _A/_B when label_nc == 0."""
    if label_nc == 0:
        label_dir, image_dir = f"{phase}_A", f"{phase}_B"
    else:
        label_dir, image_dir = f"{phase}_label", f"{phase}_img"
    groups = {
        label_dir: list_images(os.path.join(root, label_dir), "label maps" if label_nc else "input images (A)"),
        image_dir: list_images(os.path.join(root, image_dir), "photos" if label_nc else "target images (B)"),
    }
    if use_instance:
        inst_folder = os.path.join(root, f"{phase}_inst")
        if not os.path.isdir(inst_folder):
            raise DataError(
                f"{inst_folder}: folder not found, but instance maps are on (data.use_instance=True). "
                "Add the 16-bit instance-id PNGs there, or train without them: --config.data.use_instance=False."
            )
        groups[f"{phase}_inst"] = list_images(inst_folder, "16-bit instance maps")
    rows = _pair(groups, check_names)
    examples = tuple(
        Example(
            name=scene_key(row[0]),
            label=row[0],
            image=row[1],
            inst=row[2] if use_instance else None,
        )
        for row in rows
    )
    return Source(f"aligned folders {root} ({phase})", examples)


def read_cityscapes(root: str, phase: str, use_instance: bool, photo_root: Optional[str] = None) -> Source:
    """A raw Cityscapes tree (gtFine + leftImg8bit). The test phase reads 'val'.

    `photo_root` is the folder holding leftImg8bit/ when it is not `root` (e.g. the
    two zips extracted to different places); by default both live under `root`.
    """
    split = "val" if phase == "test" else phase
    label_root = os.path.join(root, "gtFine", split)
    image_root = os.path.join(root if photo_root is None else photo_root, "leftImg8bit", split)
    for folder, what in ((label_root, "gtFine"), (image_root, "leftImg8bit")):
        if not os.path.isdir(folder):
            raise DataError(
                f"{folder}: folder not found; a Cityscapes root holds gtFine/ and leftImg8bit/ "
                f"(unzip gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip into {root})."
            )
    photos = {}
    for city in sorted(os.listdir(image_root)):
        city_dir = os.path.join(image_root, city)
        if os.path.isdir(city_dir):
            for f in sorted(os.listdir(city_dir)):
                if f.endswith("_leftImg8bit.png"):
                    photos[f[: -len("_leftImg8bit.png")]] = os.path.join(city_dir, f)
    if not photos:
        raise DataError(f"{image_root}: no *_leftImg8bit.png files found under its city folders.")
    examples = []
    for key, photo in sorted(photos.items()):
        city = key.split("_")[0]
        label = os.path.join(label_root, city, f"{key}_gtFine_labelIds.png")
        inst = os.path.join(label_root, city, f"{key}_gtFine_instanceIds.png")
        for path in (label, inst) if use_instance else (label,):
            if not os.path.isfile(path):
                raise DataError(
                    f"{path}: missing; it is the gtFine partner of {photo}. "
                    "Re-extract gtFine_trainvaltest.zip, or remove the photo."
                )
        examples.append(Example(name=key, label=label, inst=inst if use_instance else None, image=photo))
    where = root if photo_root is None else f"{root} + {photo_root}"
    return Source(f"Cityscapes tree {where} ({split})", tuple(examples))


def read_ade20k(root: str, phase: str) -> Source:
    """ADEChallengeData2016: images/{training,validation}/*.jpg with annotations/.../*.png of the
    same name. 'train' reads training, 'test' validation. `root` may be the folder holding
    ADEChallengeData2016/ or that folder itself."""
    if os.path.isdir(os.path.join(root, "ADEChallengeData2016")):
        root = os.path.join(root, "ADEChallengeData2016")
    split = {"train": "training", "test": "validation", "val": "validation"}.get(phase, phase)
    image_dir, label_dir = os.path.join(root, "images", split), os.path.join(root, "annotations", split)
    for folder in (image_dir, label_dir):
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: folder not found; an ADE20K root (ADEChallengeData2016) holds images/ and "
                            f"annotations/, each with training/ and validation/ (unzip ADEChallengeData2016.zip into "
                            f"{root}).")
    labels = {os.path.splitext(os.path.basename(f))[0]: f for f in list_images(label_dir, "annotation PNGs")}
    examples = []
    for photo in list_images(image_dir, "photos"):
        key = os.path.splitext(os.path.basename(photo))[0]
        if key not in labels:
            raise DataError(f"{photo}: no annotation {os.path.join(label_dir, key + '.png')}; every ADE20K image has "
                            "one of the same name. Re-extract the release, or remove the image.")
        examples.append(Example(name=key, label=labels.pop(key), inst=None, image=photo))
    if labels:
        extra = sorted(labels.values())
        raise DataError(f"{extra[0]}: an annotation without its image in {image_dir} ({len(extra)} in all).")
    return Source(f"ADE20K {root} ({split})", tuple(examples))


def read_ab(root: str, phase: str, direction: str = "AtoB") -> Source:
    """pix2pix side-by-side images: {root}/{phase}/*.jpg, each A|B, split at width/2."""
    if direction not in ("AtoB", "BtoA"):
        raise DataError(f"data.ab_direction={direction!r} must be 'AtoB' or 'BtoA'.")
    files = list_images(os.path.join(root, phase), "A|B side-by-side images")
    examples = tuple(Example(name=scene_key(f), label=None, inst=None, image=f) for f in files)
    return Source(f"A|B images {root}/{phase}", examples, ab_direction=direction)


def read_source(data_cfg, phase: str) -> Source:
    """The Source named by a data config (formats other than 'tfds')."""
    fmt = data_cfg.dataset_format
    root = os.path.expanduser(data_cfg.dataroot)
    if fmt == "aligned":
        return read_aligned(root, phase, data_cfg.label_nc, data_cfg.use_instance, data_cfg.check_names)
    if fmt == "cityscapes":
        return read_cityscapes(root, phase, data_cfg.use_instance)
    if fmt == "ade20k":
        if data_cfg.use_instance or data_cfg.label_nc != 151:
            raise DataError("data.dataset_format='ade20k': ADE20K's 150 classes and 'other' (ids 0..150) have no "
                            "instance maps: set --config.data.label_nc=151 --config.data.use_instance=False (or use "
                            "configs/ade20k_512x512.py; `pix2pixhd-jax make-instances --dataset ade20k` makes "
                            "instance maps from the annotations, for the aligned layout).")
        return read_ade20k(root, phase)
    if fmt == "ab":
        if data_cfg.label_nc != 0 or data_cfg.use_instance:
            raise DataError(
                "data.dataset_format='ab' holds RGB inputs without instance maps: "
                "set --config.data.label_nc=0 --config.data.use_instance=False."
            )
        return read_ab(root, phase, data_cfg.ab_direction)
    raise DataError(
        f"data.dataset_format={fmt!r} is not one of 'aligned', 'cityscapes', 'ade20k', 'ab', 'tfds'."
    )
