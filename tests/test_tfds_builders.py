"""TFDS builders: exact round trips (synthetic scenes, Cityscapes from folders and zips),
clear errors, and the input pipeline over a prepared TFDS dataset."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_test_config
from pix2pixhd_jax.data import decode, synthetic, tfds_builders
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.errors import DataError

import tensorflow_datasets as tfds  # noqa: E402  (after the project's imports, which hide GPUs from TF)

# One xdist worker builds the prepared datasets once for all the tests here.
pytestmark = pytest.mark.xdist_group("tfds_builders")

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "cityscapes_samples"
SYNTHETIC = "synthetic_scenes/128x64"
CITY_SPLITS = {"train": 4, "val": 2}  # the six samples: first four as Cityscapes train, last two as val


def read_all(builder, split):
    """Every example of a split, decoded by TFDS, keyed by name."""
    ds = builder.as_dataset(split=split, shuffle_files=False)
    out = {}
    for ex in tfds.as_numpy(ds):
        name = ex["name"].decode()
        assert name not in out, f"duplicate example {name}"
        out[name] = ex
    return out


def pil_array(path):
    return np.asarray(Image.open(path))


# ----- synthetic scenes --------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_synthetic")
    tfds_builders.prepare(SYNTHETIC, str(data_dir))
    return str(data_dir)


def test_synthetic_scenes_round_trip_exactly(synthetic_dir):
    builder = tfds.builder(SYNTHETIC, data_dir=synthetic_dir)  # registered by the import
    cfg = builder.builder_config
    assert (cfg.width, cfg.height, cfg.num_train, cfg.num_test, cfg.seed) == (128, 64, 16, 8, 0)
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {"train": 16, "test": 8}
    big_ids = 0
    for phase, count in (("train", 16), ("test", 8)):
        examples = read_all(builder, phase)
        assert sorted(examples) == [f"synthetic_{phase}_{i:06d}" for i in range(count)]
        for index in range(count):
            ex = examples[f"synthetic_{phase}_{index:06d}"]
            scene = synthetic.generate_scene(128, 64, seed=0, index=index, phase=phase)
            assert ex["label"].dtype == np.uint8 and ex["label"].shape == (64, 128, 1)
            assert ex["inst"].dtype == np.uint16 and ex["inst"].shape == (64, 128, 1)
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (64, 128, 3)
            np.testing.assert_array_equal(ex["label"][..., 0], scene.label)
            np.testing.assert_array_equal(ex["inst"][..., 0], scene.inst)
            np.testing.assert_array_equal(ex["image"], scene.image)
            for key in ("id", "label", "style", "area"):
                np.testing.assert_array_equal(ex["styles"][key], [inst[key] for inst in scene.instances])
            big_ids += int((ex["inst"] > 255).any())
    assert big_ids > 0, "no instance id above 255: the 16-bit round trip was not exercised"


def test_synthetic_scenes_are_reused_not_rebuilt(synthetic_dir):
    builder = tfds_builders.prepare(SYNTHETIC, synthetic_dir)
    assert builder.info.splits["train"].num_examples == 16
    assert set(builder.info.features) == {"name", "label", "inst", "image", "styles"}


def test_prepare_rejects_other_datasets(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*synthetic_scenes/256x128.*cityscapes_instances"):
        tfds_builders.prepare("mnist", str(tmp_path))  # would download: refused
    with pytest.raises(DataError, match="no size '100x50'"):
        tfds_builders.prepare("synthetic_scenes/100x50", str(tmp_path))


# ----- Cityscapes -------------------------------------------------------------------


def _sample_rows():
    if not (SAMPLES / "train_label").is_dir():
        pytest.skip(f"the real Cityscapes samples are not at {SAMPLES} (they live in ../shared/data)")
    labels = sorted((SAMPLES / "train_label").glob("*_gtFine_labelIds.png"))
    assert len(labels) == sum(CITY_SPLITS.values())
    rows = []
    for i, label in enumerate(labels):
        key = label.name[: -len("_gtFine_labelIds.png")]
        split = "train" if i < CITY_SPLITS["train"] else "val"
        rows.append((split, key, label, SAMPLES / "train_inst" / f"{key}_gtFine_instanceIds.png",
                     SAMPLES / "train_img" / f"{key}_leftImg8bit.png"))
    return rows


@pytest.fixture(scope="module")
def cityscapes_raw(tmp_path_factory):
    """A raw Cityscapes tree (gtFine/ + leftImg8bit/) and the zips of its two halves."""
    rows = _sample_rows()
    root = tmp_path_factory.mktemp("cityscapes_raw")
    zips = tmp_path_factory.mktemp("cityscapes_zips")
    with zipfile.ZipFile(zips / "gtFine_trainvaltest.zip", "w") as gt, \
            zipfile.ZipFile(zips / "leftImg8bit_trainvaltest.zip", "w") as photos:
        for split, key, label, inst, image in rows:
            city = key.split("_")[0]
            for top, src, archive in (("gtFine", label, gt), ("gtFine", inst, gt), ("leftImg8bit", image, photos)):
                rel = f"{top}/{split}/{city}/{src.name}"
                os.makedirs(root / os.path.dirname(rel), exist_ok=True)
                os.symlink(src, root / rel)
                archive.write(src, rel)
        gt.writestr("license.txt", "not part of the data")
    expected = {"train" if split == "train" else "test": {} for split, *_ in rows}
    for split, key, label, inst, image in rows:
        expected["train" if split == "train" else "test"][key] = (label, inst, image)
    return root, zips, expected


@pytest.fixture(scope="module")
def cityscapes_from_folders(cityscapes_raw, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds_cs"))
    return tfds_builders.prepare("cityscapes_instances", data_dir, str(cityscapes_raw[0])), data_dir


@pytest.fixture(scope="module")
def cityscapes_from_zips(cityscapes_raw, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds_cs_zip"))
    return tfds_builders.prepare("cityscapes_instances", data_dir, str(cityscapes_raw[1])), data_dir


def check_cityscapes(builder, expected):
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {"train": 4, "test": 2}
    for split, files in expected.items():
        examples = read_all(builder, split)
        assert sorted(examples) == sorted(files)
        for name, (label, inst, image) in files.items():
            ex = examples[name]
            source_inst = pil_array(inst)
            assert source_inst.dtype == np.uint16 and int(source_inst.max()) > 255
            assert ex["label"].dtype == np.uint8 and ex["inst"].dtype == np.uint16
            np.testing.assert_array_equal(ex["label"][..., 0], pil_array(label))
            np.testing.assert_array_equal(ex["inst"][..., 0], source_inst)
            np.testing.assert_array_equal(ex["image"], pil_array(image))
            assert ex["image"].shape == (1024, 2048, 3)  # stored at full size


def test_cityscapes_from_folders_round_trips_exactly(cityscapes_raw, cityscapes_from_folders):
    check_cityscapes(cityscapes_from_folders[0], cityscapes_raw[2])


def test_cityscapes_from_zips_gives_the_same_examples(cityscapes_raw, cityscapes_from_zips):
    check_cityscapes(cityscapes_from_zips[0], cityscapes_raw[2])


def test_cityscapes_pipeline_reads_instances(cityscapes_raw, cityscapes_from_folders):
    cfg = load_test_config("data.dataset_format=tfds", "data.tfds_name=cityscapes_instances",
                           f"data.tfds_data_dir={cityscapes_from_folders[1]}",
                           "data.load_size=256", "data.fine_size=256", "train.batch_size=2")
    pipe = InputPipeline(cfg, "test", train=False)
    batch = next(pipe.iterate(0))
    assert batch["inst"].shape == (2, 128, 256) and int(batch["inst"].max()) > 255


def test_cityscapes_without_data_names_what_is_missing(tmp_path):
    manual = tmp_path / "manual"
    (manual / "gtFine").mkdir(parents=True)
    (manual / "notes.txt").write_text("nothing useful")
    with pytest.raises(DataError) as err:
        tfds_builders.prepare("cityscapes_instances", str(tmp_path / "data"), str(manual))
    message = str(err.value)
    assert str(manual) in message and "leftImg8bit/ or leftImg8bit_trainvaltest.zip" in message
    assert "gtFine/ or" not in message  # the gtFine folder is there
    assert "cityscapes-dataset.com" in message
    with pytest.raises(DataError, match="does not exist or is empty.*gtFine/ or gtFine_trainvaltest.zip"):
        tfds_builders.prepare("cityscapes_instances", str(tmp_path / "data"), str(tmp_path / "absent"))
    bad_zips = tmp_path / "bad_zips"
    bad_zips.mkdir()
    for name in ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"):
        with zipfile.ZipFile(bad_zips / name, "w") as archive:
            archive.writestr("train/aachen/readme.txt", "no top-level folder")
    with pytest.raises(DataError, match="gtFine_trainvaltest.zip: holds no top-level gtFine/ folder"):
        tfds_builders.prepare("cityscapes_instances", str(tmp_path / "data2"), str(bad_zips))


def test_cityscapes_files_in_other_formats_are_stored_as_decoded(tmp_path):
    """Files not already in the stored PNG layout (palette labels, 8-bit instances, RGBA
    photos) are decoded with Pillow and re-encoded, with the same meaning as decode.py's."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    expected = {}
    for split in ("train", "val"):
        for city_dir in ("gtFine", "leftImg8bit"):
            (raw / city_dir / split / "bonn").mkdir(parents=True)
        key = f"bonn_00000{len(expected)}_000019"
        ids = rng.integers(0, 34, (16, 32)).astype(np.uint8)
        palette = Image.frombytes("P", (32, 16), ids.tobytes())
        palette.putpalette(list(rng.integers(0, 256, 768).astype(np.uint8)))
        palette.save(raw / "gtFine" / split / "bonn" / f"{key}_gtFine_labelIds.png")
        inst = rng.integers(0, 256, (16, 32)).astype(np.uint8)
        Image.fromarray(inst).save(raw / "gtFine" / split / "bonn" / f"{key}_gtFine_instanceIds.png")
        rgba = rng.integers(0, 256, (16, 32, 4)).astype(np.uint8)
        photo = raw / "leftImg8bit" / split / "bonn" / f"{key}_leftImg8bit.png"
        Image.fromarray(rgba).save(photo)
        expected[key] = ("train" if split == "train" else "test", ids, inst,
                         np.asarray(decode.decode_photo(photo.read_bytes(), str(photo))))
    builder = tfds_builders.prepare("cityscapes_instances", str(tmp_path / "data"), str(raw))
    for key, (split, ids, inst, photo) in expected.items():
        ex = read_all(builder, split)[key]
        np.testing.assert_array_equal(ex["label"][..., 0], ids)
        np.testing.assert_array_equal(ex["inst"][..., 0], inst)
        np.testing.assert_array_equal(ex["image"], photo)


# ----- the input pipeline over TFDS ----------------------------------------------------


def make(data_dir, *overrides, split="train", **kwargs):
    cfg = load_test_config("data.dataset_format=tfds", f"data.tfds_name={SYNTHETIC}",
                           f"data.tfds_data_dir={data_dir}", "data.load_size=128", "data.fine_size=128",
                           "train.batch_size=2", *overrides)
    return InputPipeline(cfg, split, **kwargs)


def names(batches):
    return [n.decode() for b in batches for n in b["name"]]


def test_pipeline_batches_from_tfds(synthetic_dir):
    pipe = make(synthetic_dir)
    assert pipe.num_examples == 16 and pipe.steps_per_epoch == 8
    batch = next(pipe.iterate(0))
    assert set(batch) == {"name", "label_ids", "inst", "image"}
    assert batch["label_ids"].shape == (2, 64, 128) and batch["label_ids"].dtype == np.uint8
    assert batch["inst"].shape == (2, 64, 128) and batch["inst"].dtype == np.uint16
    assert batch["image"].shape == (2, 64, 128, 3) and batch["image"].dtype == np.uint8
    assert batch["name"].shape == (2,)


def test_pipeline_contents_match_the_scenes(synthetic_dir):
    batches = list(make(synthetic_dir, split="test", train=False).iterate(0, num_epochs=1))
    seen = 0
    for batch in batches:
        for i, name in enumerate(batch["name"]):
            index = int(name.decode().rsplit("_", 1)[1])
            scene = synthetic.generate_scene(128, 64, seed=0, index=index, phase="test")
            np.testing.assert_array_equal(batch["label_ids"][i], scene.label)
            np.testing.assert_array_equal(batch["inst"][i], scene.inst)
            np.testing.assert_array_equal(batch["image"][i], scene.image)
            seen += 1
    assert seen == 8


def test_pipeline_order_is_fixed_by_seed(synthetic_dir):
    a = list(make(synthetic_dir, "seed=1").iterate(0, num_epochs=2))
    b = list(make(synthetic_dir, "seed=1").iterate(0, num_epochs=2))
    c = names(make(synthetic_dir, "seed=2").iterate(0, num_epochs=2))
    assert len(a) == len(b) == 16
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    na = names(a)
    assert na != c
    assert na[:16] != na[16:] and sorted(na[:16]) == sorted(na[16:])  # reshuffled, every example


@pytest.mark.parametrize("start", [5, 11])
def test_pipeline_resumes_exactly(synthetic_dir, start):
    full = list(make(synthetic_dir).iterate(0, num_epochs=2))
    tail = list(make(synthetic_dir).iterate(start, num_epochs=2))
    assert len(tail) == len(full) - start
    for x, y in zip(full[start:], tail):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


@pytest.mark.parametrize("split,train,count", [("train", True, 16), ("test", False, 8), ("train", False, 16)])
def test_pipeline_processes_split_the_data(synthetic_dir, split, train, count):
    parts = [names(make(synthetic_dir, split=split, train=train, process_index=p, process_count=2)
                   .iterate(0, num_epochs=1))
             for p in range(2)]
    assert len(parts[0]) == len(parts[1]) == count // 2
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == [f"synthetic_{split}_{i:06d}" for i in range(count)]
