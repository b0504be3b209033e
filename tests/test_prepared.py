"""A dataset prepared once (`prepare-data`, data/prepared.py): batches bit-identical to the ones
made from the source files, every epoch's crops and flips, resume; settings checked."""

import json

import numpy as np
import pytest

from conftest import ROOT, load_test_config, make_aligned, save
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data import prepared
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.errors import DataError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    make_aligned(root, n=6, w=160, h=80)  # scale_width to 128 resizes it (NEAREST ids, BICUBIC photos)
    make_aligned(root, phase="test", n=3, w=160, h=80, seed=5)
    return root


CROPS = ("data.resize_or_crop=scale_width_and_crop", "data.load_size=128", "data.fine_size=48", "train.batch_size=2")


def batches(config, split="train", start=0, epochs=2, **kwargs):
    return list(InputPipeline(config, split, **kwargs).iterate(start, num_epochs=epochs))


def assert_same(got, want):
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert set(a) == set(b)
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_prepared_batches_equal_the_source_batches_with_crops_flips_and_resume(dataset, tmp_path):
    config = load_test_config(f"data.dataroot={dataset}", *CROPS)
    assert prepared.write(config, str(tmp_path), progress=False) == {"train": 6, "test": 3}
    fast = load_test_config(f"data.dataroot={dataset}", *CROPS, f"data.prepared_dir={tmp_path}")
    source = batches(config)
    assert_same(batches(fast), source)
    assert_same(batches(fast, start=4), source[4:])  # resume mid-epoch 1 (3 batches per epoch)
    # The random part still differs between epochs, and flips happened.
    assert not np.array_equal(source[0]["image"], source[3]["image"]) or source[0]["name"][0] != source[3]["name"][0]
    test = load_test_config(f"data.dataroot={dataset}", *CROPS)
    assert_same(batches(fast, "test", epochs=1, train=False), batches(test, "test", epochs=1, train=False))


def test_prepared_16_bit_one_channel_photos_round_bicubic_to_the_nearest_level(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for i in range(2):
        save(f"{root}/train_label/s{i}.png", rng.integers(0, 8, (40, 80)).astype(np.uint8))
        save(f"{root}/train_img/s{i}.png", rng.integers(0, 65536, (40, 80)).astype(np.uint16))
    args = (f"data.dataroot={root}", "data.use_instance=False", "data.output_nc=1", "data.image_bit_depth=16",
            "data.load_size=64", "train.batch_size=2", "data.label_nc=8")
    config = load_test_config(*args)
    prepared.write(config, str(tmp_path / "prep"), splits=("train",), progress=False)
    fast = load_test_config(*args, f"data.prepared_dir={tmp_path / 'prep'}")
    assert_same(batches(fast), batches(config))
    assert batches(fast)[0]["image"].dtype == np.uint16


def test_cityscapes_samples_prepared_for_the_512p_config_equal_the_source(cityscapes_samples, tmp_path):
    over = ["--config.data.dataset_format=aligned", f"--config.data.dataroot={cityscapes_samples}",
            "--config.train.batch_size=2"]
    config = load_config(str(ROOT / "configs" / "cityscapes_1024x512.py"), over)
    assert main(["prepare-data", "--config", str(ROOT / "configs" / "cityscapes_1024x512.py"), "--out",
                 str(tmp_path), "--split", "train", "--quiet", *over]) == 0
    manifest = json.load(open(tmp_path / "train" / prepared.MANIFEST))
    assert [r["size"] for r in manifest["examples"]] == [[1024, 512]] * 6
    assert [r["source_size"] for r in manifest["examples"]] == [[2048, 1024]] * 6
    fast = load_config(str(ROOT / "configs" / "cityscapes_1024x512.py"),
                       over + [f"--config.data.prepared_dir={tmp_path}"])
    got = batches(fast, epochs=1)
    assert_same(got, batches(config, epochs=1))
    assert sum(v.nbytes for k, v in got[0].items() if k != "name") / 2 == 1024 * 512 * 6  # 3 MB per example


def test_prepared_data_is_refused_for_other_settings_and_says_how_to_make_it(dataset, tmp_path):
    config = load_test_config(f"data.dataroot={dataset}", *CROPS)
    prepared.write(config, str(tmp_path), splits=("train",), progress=False)
    other = load_test_config(f"data.dataroot={dataset}", *CROPS, "data.load_size=96", f"data.prepared_dir={tmp_path}")
    with pytest.raises(DataError, match=r"load_size: 128 there, 96 now.*prepare-data"):
        InputPipeline(other, "train")
    missing = load_test_config(f"data.dataroot={dataset}", *CROPS, f"data.prepared_dir={tmp_path / 'none'}")
    with pytest.raises(DataError, match=r"prepared.json: not found.*prepare-data --config CONFIG"):
        InputPipeline(missing, "train")
    with pytest.raises(DataError, match="leave data.prepared_dir unset"):
        prepared.write(other, str(tmp_path / "again"), progress=False)
