"""A dataset prepared once for a config whose resize is fixed: `pix2pixhd-jax prepare-data`.

The reference decodes and resizes every example at every epoch: for Cityscapes' 512p stage
that is a 2048x1024 photo decoded and scaled to 1024x512 with BICUBIC each time (about
three quarters of an example's input time, experiments/benchmarks.md "Input"). The resize
does not depend on the epoch: `resize_step` (the config's resize, and for 'none' the rounding
to the generator's factor) is the deterministic part of every mode, the random crop and flip
come after it. `write` runs the reader, validation and `resize_step` once per example and
writes the result as PNGs (label ids 8- or 16-bit, 16-bit instance ids, the photo in its own
levels) with `prepared.json`, the manifest: the examples in the source's order with their
names and original sizes, and the data settings they were made with.

Training with `data.prepared_dir=DIR` then reads only these files, and the pipeline decodes
them with TensorFlow's own PNG decoder and crops and flips them with TensorFlow ops: no Python
and no Pillow per example, so its throughput grows with cores. PNG is lossless and the crop
and flip are copies, so the batches are bit-identical to the ones made from the source files
(tests/test_prepared.py compares them); random crops and flips are still drawn from
(seed, epoch, name), so resume stays exact. One difference: a 16-bit photo's BICUBIC result,
which falls between levels, is stored rounded to the nearest level, as the pipeline rounds it.
"""

import dataclasses
import json
import os
from concurrent import futures
from typing import Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from pix2pixhd_jax import atomic
from pix2pixhd_jax.data import decode, readers, transforms
from pix2pixhd_jax.data.label_maps import ModelMaps
from pix2pixhd_jax.errors import DataError

MANIFEST = "prepared.json"
FORMAT = 1
SPLITS = ("train", "test")


def settings(config) -> dict:
    """The data settings a prepared dataset depends on (a config with other values needs another)."""
    data, maps = config.data, ModelMaps.of(config)
    return {
        "label_nc": maps.label_nc, "input_nc": maps.input_nc, "output_nc": maps.channels,
        "image_bit_depth": maps.bits, "unknown_label": maps.unknown_label,
        "use_instance": maps.use_instance, "resize_or_crop": str(data.resize_or_crop),
        "load_size": int(data.load_size), "size_divisor": maps.divisor,
        "ab_direction": str(data.ab_direction) if data.dataset_format == "ab" else "",
    }


@dataclasses.dataclass(frozen=True)
class PreparedExample:
    name: str
    label: str  # absolute paths
    inst: Optional[str]
    image: str
    source_size: tuple  # (w, h) before the resize: the random crop is drawn from it, as for the source
    size: tuple  # (w, h) after it


@dataclasses.dataclass(frozen=True)
class PreparedSplit:
    root: str
    split: str
    description: str
    examples: tuple
    label_dtype: str  # 'uint8' or 'uint16' (label ids), 'uint8' (label images)

    def __len__(self):
        return len(self.examples)


def _png(array: np.ndarray) -> Image.Image:
    """A PIL image that PNG stores losslessly: 8-bit L/RGB, or 16-bit grayscale for uint16."""
    array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    return Image.fromarray(array if array.dtype == np.uint16 else array.astype(np.uint8, copy=False))


def _prepare_one(example, record_of, maps: ModelMaps, ab_direction: str, out_dir: str):
    data = maps.data
    record = record_of(example)
    label, inst, photo = decode.decode_example(
        record, maps.label_nc, maps.use_instance and not ab_direction, ab_direction or None, channels=maps.channels,
        bit_depth=maps.bits, unknown_label=maps.unknown_label, input_nc=maps.input_nc)
    w, h = photo.size
    step = lambda img, method: transforms.resize_step(img, data.resize_or_crop, data.load_size,  # noqa: E731
                                                      maps.divisor, method)
    out_photo = transforms.image_levels(step(photo, Image.BICUBIC))
    if isinstance(label, Image.Image):
        out_label = transforms.image_levels(step(label, Image.BICUBIC))
    else:
        out_label = np.asarray(step(Image.fromarray(label.astype(np.int32), "I"), Image.NEAREST)).astype(
            maps.label_dtype)
    files = {"label": f"{example.name}_label.png", "image": f"{example.name}_image.png"}
    if inst is not None:
        ids = np.asarray(step(Image.fromarray(inst.astype(np.int32), "I"), Image.NEAREST))
        check_instance_ids(ids, record["inst_file"])
        files["inst"] = f"{example.name}_inst.png"
        _save(_png(ids.astype(np.uint16)), os.path.join(out_dir, files["inst"]))
    _save(_png(out_label), os.path.join(out_dir, files["label"]))
    _save(_png(out_photo), os.path.join(out_dir, files["image"]))
    size = out_photo.shape[1], out_photo.shape[0]
    return {"name": example.name, "files": files, "source_size": [w, h], "size": list(size)}


def _save(img: Image.Image, path: str):
    # compress_level 1: a third of the default's writing time for files 10-20% larger; decoding
    # speed is about the same.
    atomic.write_png(path, img, compress_level=1)


def check_instance_ids(ids: np.ndarray, where: str):
    """Instance ids travel as uint16 (Cityscapes' class*1000+k and make-instances' 1000+n fit)."""
    if ids.size and (int(ids.max()) > 65535 or int(ids.min()) < 0):
        bad = int(ids.max()) if int(ids.max()) > 65535 else int(ids.min())
        raise DataError(f"{where}: instance id {bad} is outside 0..65535; instance ids are carried as 16-bit "
                        "numbers (as 16-bit PNGs hold them). Renumber the map's objects (boundaries and the "
                        "encoder's pooling need only distinct ids per object; class*1000+k fits up to class 65).")


def write(config, out: str, splits=SPLITS, workers: int = 0, progress: bool = True) -> dict:
    """Prepare `splits` of the config's dataset into `out` (one folder per split, each with its
    manifest); returns {split: number of examples}. A split the dataset lacks is skipped when it is
    not the first one asked for (a dataset without a test split)."""
    data = config.data
    if data.dataset_format == "tfds":
        raise DataError("prepare-data reads dataset files (data.dataset_format aligned, cityscapes, ade20k or ab); "
                        "a TFDS dataset is prepared by `pix2pixhd-jax prepare-tfds`.")
    if data.prepared_dir:
        raise DataError(f"data.prepared_dir={data.prepared_dir!r}: prepare-data reads the source files; leave "
                        "data.prepared_dir unset (it is the setting that trains from the prepared folder).")
    transforms.check_mode(data.resize_or_crop)
    wanted, maps = settings(config), ModelMaps.of(config)
    done = {}
    for i, split in enumerate(splits):
        try:
            source = readers.read_source(data, split)
        except DataError:
            if i == 0:
                raise
            continue
        split_dir = os.path.join(out, split)
        os.makedirs(split_dir, exist_ok=True)

        def record_of(ex):
            read = lambda path: open(path, "rb").read() if path else b""  # noqa: E731
            return {"label": read(ex.label), "inst": read(ex.inst), "image": read(ex.image),
                    "label_file": ex.label or "", "inst_file": ex.inst or "", "image_file": ex.image}

        work = lambda ex: _prepare_one(ex, record_of, maps, wanted["ab_direction"], split_dir)  # noqa: E731
        with futures.ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1)) as pool:
            rows = list(tqdm(pool.map(work, source.examples), total=len(source), disable=not progress,
                             desc=f"prepare {split}", unit="example"))
        manifest = {"format": FORMAT, "split": split, "source": source.description, "settings": wanted,
                    "label_dtype": maps.label_dtype.name if maps.label_nc else "uint8",
                    "examples": rows}
        atomic.write_text(os.path.join(split_dir, MANIFEST), json.dumps(manifest))
        done[split] = len(rows)
    return done


def read(config, split: str) -> PreparedSplit:
    """The prepared split named by data.prepared_dir, checked against the config."""
    root = os.path.join(os.path.expanduser(config.data.prepared_dir), split)
    path = os.path.join(root, MANIFEST)
    fix = (f"Run `pix2pixhd-jax prepare-data --config CONFIG --out {config.data.prepared_dir}` with this config, "
           "or unset data.prepared_dir to read the source files.")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found; data.prepared_dir={config.data.prepared_dir!r} holds no prepared "
                        f"{split!r} split. {fix}")
    try:
        manifest = json.load(open(path))
        rows = manifest["examples"]
        saved = manifest["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: unreadable manifest ({e}). {fix}") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: prepared-data format {manifest.get('format')!r}, this version reads {FORMAT}. {fix}")
    wanted = settings(config)
    diffs = [f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in wanted.items() if saved.get(k) != v]
    if diffs:
        raise DataError(f"{root} was prepared with other data settings ({'; '.join(diffs)}). {fix}")
    examples = tuple(PreparedExample(
        name=r["name"], label=os.path.join(root, r["files"]["label"]),
        inst=os.path.join(root, r["files"]["inst"]) if "inst" in r["files"] else None,
        image=os.path.join(root, r["files"]["image"]), source_size=tuple(r["source_size"]), size=tuple(r["size"]))
        for r in rows)
    return PreparedSplit(root, split, f"prepared {manifest.get('source', root)} in {root}", examples,
                         manifest.get("label_dtype", "uint8"))
