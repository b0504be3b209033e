"""TFDS builders: datasets prepared once into TFDS's record files for fast sequential reads.

  synthetic_scenes      the bundled synthetic street scenes (`synthetic.generate_scene`),
                        one config per size: 128x64 (tests), 256x128, 512x256, 1024x512,
                        2048x1024. Splits 'train' and 'test'.
  cityscapes_instances  Cityscapes gtFine label ids *with* instance ids (TFDS's own
                        'cityscapes' builder drops them) and the leftImg8bit photos.
                        Splits 'train' (Cityscapes train) and 'test' (Cityscapes *val*:
                        the test set's labels are not public, and the pix2pixHD reference
                        tests on val).

Every example holds
  name   Text, the scene's name
  label  Image (H, W, 1) uint8, PNG: label ids
  inst   Image (H, W, 1) uint16, PNG: instance ids (16 bits, Cityscapes' label*1000+k)
  image  Image (H, W, 3) uint8, PNG: the photo
and synthetic_scenes also `styles`, one row per instance: id, label, style, area.
Pixels are stored exactly as generated / as in the source files (no resizing).

The input pipeline (`data.dataset_format='tfds'`) reads label/inst/image as
encoded PNG bytes (`tfds.decode.SkipDecoding`) and decodes them with Pillow,
like files from disk. Importing this module registers both builders:

    import pix2pixhd_jax.data.tfds_builders
    tfds.builder('synthetic_scenes/128x64', data_dir=...)

`prepare()` builds one of them without touching the network; the CLI's
`pix2pixhd-jax prepare-tfds` calls it.
"""

import dataclasses
import io
import os
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from pix2pixhd_jax.data import decode, readers, synthetic
from pix2pixhd_jax.data.pipeline import tensorflow
from pix2pixhd_jax.errors import DataError

tf = tensorflow()

_VERSION = tfds.core.Version("1.0.0")


class _CodePathMixin:
    """`code_path` = this file, computed without TFDS's lookup, which on TFDS 4.9.x imports
    the `importlib_resources` backport (only a dependency on Python < 3.9) and fails without it."""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(os.path.abspath(__file__))


_RELEASE_NOTES = {"1.0.0": "Initial release."}


def _image_features() -> dict:
    return {
        "name": tfds.features.Text(),
        "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png"),
        "inst": tfds.features.Image(shape=(None, None, 1), dtype=np.uint16, encoding_format="png"),
        "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
    }


# ----- synthetic scenes ------------------------------------------------------


@dataclasses.dataclass(eq=False)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """One size of the synthetic scenes: width x height, examples per split, generator seed."""

    width: int = 256
    height: int = 128
    num_train: int = 1000
    num_test: int = 100
    seed: int = 0


def _synthetic_config(width, height, num_train, num_test, seed=0):
    return SyntheticScenesConfig(
        name=f"{width}x{height}",
        description=f"{width}x{height} scenes, {num_train} train / {num_test} test, seed {seed}.",
        width=width,
        height=height,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
    )


class SyntheticScenes(_CodePathMixin, tfds.core.GeneratorBasedBuilder):
    """Synthetic street scenes (label ids, 16-bit instance ids, photo) from `synthetic.generate_scene`."""

    VERSION = _VERSION
    RELEASE_NOTES = _RELEASE_NOTES
    BUILDER_CONFIGS = [
        _synthetic_config(128, 64, 16, 8),
        _synthetic_config(256, 128, 1000, 100),
        _synthetic_config(512, 256, 1000, 100),
        _synthetic_config(1024, 512, 500, 50),
        _synthetic_config(2048, 1024, 200, 20),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "256x128"

    def _info(self) -> tfds.core.DatasetInfo:
        features = _image_features()
        features["styles"] = tfds.features.Sequence(
            {"id": np.int32, "label": np.int32, "style": np.int32, "area": np.int32}
        )
        return self.dataset_info_from_configs(
            description=(
                "Procedurally generated street scenes: a label map, a 16-bit instance map "
                "(label*1000+k) and a photo per scene; `styles` lists each instance's id, "
                "class label, appearance style (index into synthetic.STYLES[class]) and area."
            ),
            features=tfds.features.FeaturesDict(features),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        return {
            "train": self._generate_examples("train", cfg.num_train),
            "test": self._generate_examples("test", cfg.num_test),
        }

    def _generate_examples(self, phase: str, count: int):
        cfg = self.builder_config
        for index in range(count):
            scene = synthetic.generate_scene(cfg.width, cfg.height, seed=cfg.seed, index=index, phase=phase)
            name = f"synthetic_{phase}_{index:06d}"
            yield name, {
                "name": name,
                "label": np.asarray(scene.label, np.uint8)[..., None],
                "inst": np.asarray(scene.inst, np.uint16)[..., None],
                "image": _fast_png(np.asarray(scene.image, np.uint8)),
                "styles": {
                    key: np.asarray([int(inst[key]) for inst in scene.instances], np.int32)
                    for key in ("id", "label", "style", "area")
                },
            }


# ----- Cityscapes with instance ids ----------------------------------------------

_CITYSCAPES_PARTS = (
    ("gtFine", "gtFine_trainvaltest.zip", "label and instance ids"),
    ("leftImg8bit", "leftImg8bit_trainvaltest.zip", "photos"),
)


class CityscapesInstances(_CodePathMixin, tfds.core.GeneratorBasedBuilder):
    """Cityscapes gtFine label ids and 16-bit instance ids with the leftImg8bit photos.

    Split 'train' is Cityscapes train (2975 scenes); 'test' is Cityscapes val (500),
    as in the pix2pixHD reference (the test set's labels are not public).
    """

    VERSION = _VERSION
    RELEASE_NOTES = _RELEASE_NOTES
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Register at https://www.cityscapes-dataset.com/ and download
    gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip. Put the two zips in
    manual_dir, or their extracted gtFine/ and leftImg8bit/ folders, so that
    manual_dir holds gtFine/{train,val}/<city>/*_gtFine_{labelIds,instanceIds}.png
    and leftImg8bit/{train,val}/<city>/*_leftImg8bit.png.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=(
                "Cityscapes fine annotations with instance ids: label ids (uint8), instance ids "
                "(uint16, label*1000+k for things, label id for stuff) and the photo, at full "
                "resolution. 'test' is Cityscapes val."
            ),
            features=tfds.features.FeaturesDict(_image_features()),
            supervised_keys=None,
            homepage="https://www.cityscapes-dataset.com/",
        )

    def _split_generators(self, dl_manager):
        label_root, photo_root = _cityscapes_roots(dl_manager)
        return {
            # 'test' reads Cityscapes val (readers.read_cityscapes maps the phase).
            split: self._generate_examples(
                readers.read_cityscapes(label_root, split, use_instance=True, photo_root=photo_root)
            )
            for split in ("train", "test")
        }

    def _generate_examples(self, source: readers.Source):
        for ex in source.examples:
            label, label_hw = _read_label(ex.label)
            inst, inst_hw = _read_instances(ex.inst)
            image, image_hw = _read_photo(ex.image)
            for path, hw in ((ex.label, label_hw), (ex.inst, inst_hw)):
                if hw != image_hw:
                    raise DataError(
                        f"{path} is {hw[1]}x{hw[0]} but its photo {ex.image} is {image_hw[1]}x{image_hw[0]} "
                        "(WxH); re-extract both from the Cityscapes zips."
                    )
            yield ex.name, {"name": ex.name, "label": label, "inst": inst, "image": image}


def _cityscapes_roots(dl_manager):
    """(root holding gtFine/, root holding leftImg8bit/): folders in manual_dir, else its zips extracted."""
    try:
        manual = dl_manager.manual_dir
    except AssertionError:  # TFDS: missing or empty
        manual = None
    where = os.fspath(manual if manual is not None else getattr(dl_manager, "_manual_dir", None) or "(unset)")
    roots, missing = {}, []
    for folder, zip_name, what in _CITYSCAPES_PARTS:
        if manual is not None and (manual / folder).is_dir():
            roots[folder] = os.fspath(manual)
        elif manual is not None and (manual / zip_name).is_file():
            extracted = dl_manager.extract(manual / zip_name)
            if not (extracted / folder).is_dir():
                raise DataError(
                    f"{manual / zip_name}: holds no top-level {folder}/ folder (extracted to {extracted}); "
                    f"re-download {zip_name} from https://www.cityscapes-dataset.com/, or extract it so "
                    f"that {manual / folder} exists."
                )
            roots[folder] = os.fspath(extracted)
        else:
            missing.append(f"{folder}/ or {zip_name} ({what})")
    if missing:
        state = "does not exist or is empty; it must hold" if manual is None else "lacks"
        raise DataError(
            f"cityscapes_instances: manual_dir {where} {state} {' and '.join(missing)}. "
            "Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from "
            "https://www.cityscapes-dataset.com/ and put them (or their extracted gtFine/ and "
            "leftImg8bit/ folders) in that folder, or pass another (`pix2pixhd-jax prepare-tfds --manual-dir DIR`)."
        )
    return roots["gtFine"], roots["leftImg8bit"]


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_layout(data: bytes):
    """(bit depth, colour type) from a PNG's IHDR, or None when `data` is not a PNG."""
    if len(data) < 29 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return data[24], data[25]


def _open(path: str):
    """(file bytes, fully decoded PIL image), or a DataError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the image ({e}); re-extract it from the Cityscapes zip.") from None
    return data, img


def _stored(data: bytes, array: np.ndarray, layout):
    """What to hand TFDS: the file's own bytes when they are already a PNG that TFDS and
    Pillow decode to exactly `array` (Cityscapes' files are), else `array` to re-encode.
    Re-encoding a 2048x1024 photo costs over a second; copying the bytes costs nothing."""
    return (data if _png_layout(data) == layout else array), array.shape[:2]


def _read_label(path: str):
    data, img = _open(path)
    if img.mode not in ("L", "P"):
        raise DataError(
            f"{path}: a label-id map must be an 8-bit single-channel PNG, got mode {img.mode!r} "
            "(use *_gtFine_labelIds.png, not *_color.png)."
        )
    # A palette image stores indices (the ids): re-encode them as grey rather than copy it.
    return _stored(data, np.asarray(img, np.uint8)[..., None], (8, 0))


def _read_instances(path: str):
    data, img = _open(path)
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "L"):
        raise DataError(f"{path}: an instance-id map must be a single-channel 16-bit PNG, got mode {img.mode!r}.")
    ids = np.asarray(img)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > 65535):
        raise DataError(f"{path}: instance ids {int(ids.min())}..{int(ids.max())} do not fit 16 bits.")
    return _stored(data, ids.astype(np.uint16)[..., None], (16, 0))


def _read_photo(path: str):
    data, img = _open(path)
    if img.mode != "RGB":  # as the pipeline reads photo files: alpha over black, 16 bits scaled
        img = decode.decode_photo(data, path)
    stored, hw = _stored(data, np.asarray(img, np.uint8), (8, 2))
    return (_fast_png(stored) if isinstance(stored, np.ndarray) else stored), hw


def _fast_png(rgb: np.ndarray) -> bytes:
    """An RGB photo as PNG bytes with zlib level 1: ~5x faster than TFDS's encoder, ~7% larger."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 photo, got {rgb.shape} {rgb.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ----- building ---------------------------------------------------------------

BUILDERS = {"synthetic_scenes": SyntheticScenes, "cityscapes_instances": CityscapesInstances}


def prepare(name: str, data_dir: Optional[str], manual_dir: Optional[str] = None) -> tfds.core.DatasetBuilder:
    """Build `name` ('synthetic_scenes/512x256', 'cityscapes_instances', ...) into data_dir; return its builder.

    Only this module's builders are accepted, so nothing is downloaded: the synthetic
    scenes are generated, Cityscapes is read from manual_dir (default:
    <data_dir>/downloads/manual). A dataset already prepared there is reused.
    """
    base = name.split("/")[0].split(":")[0]
    if base not in BUILDERS:
        raise DataError(
            f"prepare-tfds: unknown dataset {name!r}; this project builds "
            + ", ".join(
                [f"synthetic_scenes/{c.name}" for c in SyntheticScenes.BUILDER_CONFIGS] + ["cityscapes_instances"]
            )
            + "."
        )
    if base == "synthetic_scenes" and "/" in name:
        config = name.split("/")[1].split(":")[0]
        known = [c.name for c in SyntheticScenes.BUILDER_CONFIGS]
        if config not in known:
            raise DataError(f"synthetic_scenes has no size {config!r}; choose one of {', '.join(known)}.")
    if manual_dir is not None:
        manual_dir = os.path.abspath(os.path.expanduser(manual_dir))
    builder = tfds.builder(name, data_dir=os.path.expanduser(data_dir) if data_dir else None)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    )
    return builder
