"""Each reader lists the right files, pairs them, and fails clearly on bad layouts."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import block_example, load_test_config, make_aligned, save
from pix2pixhd_jax.data import decode, readers
from pix2pixhd_jax.errors import DataError


def record(example, source=None):
    data = {}
    for key in ("label", "inst", "image"):
        path = getattr(example, key)
        data[key] = open(path, "rb").read() if path else b""
        data[f"{key}_file"] = path or ""
    return data


def test_aligned_pairs_by_sorted_name_and_decodes_exactly(tmp_path):
    made = make_aligned(tmp_path, n=4, names=["b", "a", "d", "c"])
    source = readers.read_aligned(str(tmp_path), "train", 35, True)
    assert [e.name for e in source.examples] == ["a", "b", "c", "d"]
    by_name = {name: rest for name, *rest in made}
    for ex in source.examples:
        label, inst, photo = decode.decode_example(record(ex), 35, True)
        np.testing.assert_array_equal(label, by_name[ex.name][0])
        np.testing.assert_array_equal(inst, by_name[ex.name][1])
        np.testing.assert_array_equal(np.asarray(photo), by_name[ex.name][2])


def test_aligned_without_instances_needs_no_inst_folder(tmp_path):
    make_aligned(tmp_path, n=2)
    shutil.rmtree(tmp_path / "train_inst")
    source = readers.read_aligned(str(tmp_path), "train", 35, use_instance=False)
    assert all(e.inst is None for e in source.examples)
    with pytest.raises(DataError, match=r"train_inst: folder not found.*use_instance=False"):
        readers.read_aligned(str(tmp_path), "train", 35, use_instance=True)


def test_aligned_count_mismatch_names_the_unpaired_file(tmp_path):
    make_aligned(tmp_path, n=3)
    os.remove(tmp_path / "train_img" / "scene_001.png")
    with pytest.raises(DataError, match=r"file counts differ.*train_label: 3.*train_img: 2.*scene_001.png has no partner"):
        readers.read_aligned(str(tmp_path), "train", 35, True)


def test_aligned_name_mismatch_is_an_error_unless_disabled(tmp_path):
    make_aligned(tmp_path, n=2)
    os.rename(tmp_path / "train_img" / "scene_001.png", tmp_path / "train_img" / "scene_009.png")
    with pytest.raises(DataError, match=r"name different scenes.*scene_001.*scene_009.*check_names=False"):
        readers.read_aligned(str(tmp_path), "train", 35, True)
    assert len(readers.read_aligned(str(tmp_path), "train", 35, True, check_names=False)) == 2


def test_role_suffixes_are_ignored_when_pairing():
    assert readers.scene_key("x/aachen_000000_000019_gtFine_labelIds.png") == "aachen_000000_000019"
    assert readers.scene_key("x/aachen_000000_000019_leftImg8bit.png") == "aachen_000000_000019"
    assert readers.scene_key("x/0001_label.png") == readers.scene_key("y/0001.jpg") == "0001"


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    make_aligned(tmp_path, n=2)
    for f in os.listdir(tmp_path / "train_img"):
        os.remove(tmp_path / "train_img" / f)
    with pytest.raises(DataError, match=r"train_img: no images found.*photos"):
        readers.read_aligned(str(tmp_path), "train", 35, True)
    with pytest.raises(DataError, match=r"test_label: folder not found"):
        readers.read_aligned(str(tmp_path), "test", 35, True)


def test_shared_cityscapes_samples_read_as_aligned(cityscapes_samples):
    source = readers.read_aligned(str(cityscapes_samples), "train", 35, True)
    assert len(source) == 6
    label, inst, photo = decode.decode_example(record(source.examples[0]), 35, True)
    assert label.shape == inst.shape == (1024, 2048) and photo.size == (2048, 1024)
    # Real 16-bit ids: cars are 26000+k, and the class of an instance id is id // 1000.
    assert inst.max() >= 26000
    big = inst >= 1000
    np.testing.assert_array_equal(inst[big] // 1000, label[big])
    np.testing.assert_array_equal(inst[~big], label[~big])


def make_cityscapes_tree(samples, root, splits=(("train", 4), ("val", 2))):
    names = sorted(f[: -len("_gtFine_labelIds.png")] for f in os.listdir(samples / "train_label"))
    start = 0
    for split, count in splits:
        for key in names[start:start + count]:
            city = key.split("_")[0]
            gt, img = root / "gtFine" / split / city, root / "leftImg8bit" / split / city
            gt.mkdir(parents=True, exist_ok=True), img.mkdir(parents=True, exist_ok=True)
            shutil.copy(samples / "train_label" / f"{key}_gtFine_labelIds.png", gt)
            shutil.copy(samples / "train_inst" / f"{key}_gtFine_instanceIds.png", gt)
            shutil.copy(samples / "train_img" / f"{key}_leftImg8bit.png", img)
        start += count
    return names


def test_cityscapes_tree_reader_and_val_as_test(cityscapes_samples, tmp_path):
    names = make_cityscapes_tree(cityscapes_samples, tmp_path)
    train = readers.read_cityscapes(str(tmp_path), "train", True)
    test = readers.read_cityscapes(str(tmp_path), "test", True)
    assert [e.name for e in train.examples] == names[:4]
    assert [e.name for e in test.examples] == names[4:]
    for ex in train.examples:
        assert ex.label.endswith("_gtFine_labelIds.png") and ex.inst.endswith("_gtFine_instanceIds.png")
        assert readers.scene_key(ex.label) == readers.scene_key(ex.image) == ex.name
    os.remove(tmp_path / "gtFine" / "val" / "aachen" / f"{names[5]}_gtFine_instanceIds.png")
    with pytest.raises(DataError, match=rf"{names[5]}_gtFine_instanceIds.png: missing"):
        readers.read_cityscapes(str(tmp_path), "test", True)
    with pytest.raises(DataError, match=r"gtFine.*not found.*gtFine_trainvaltest.zip"):
        readers.read_cityscapes(str(tmp_path / "nowhere"), "train", True)


def test_ab_side_by_side_is_split_into_label_and_photo(tmp_path):
    a = np.full((64, 64, 3), 10, np.uint8)
    b = np.full((64, 64, 3), 200, np.uint8)
    save(f"{tmp_path}/train/0001.jpg", np.concatenate([a, b], axis=1))
    source = readers.read_ab(str(tmp_path), "train", "AtoB")
    label, inst, photo = decode.decode_example(record(source.examples[0]), 0, False, source.ab_direction)
    assert inst is None and label.size == photo.size == (64, 64)
    assert abs(np.asarray(label).mean() - 10) < 3 and abs(np.asarray(photo).mean() - 200) < 3
    label, _, photo = decode.decode_example(record(source.examples[0]), 0, False, "BtoA")
    assert abs(np.asarray(label).mean() - 200) < 3


def test_ab_format_needs_label_nc_0():
    cfg = load_test_config("data.dataset_format=ab")
    with pytest.raises(DataError, match=r"label_nc=0 --config.data.use_instance=False"):
        readers.read_source(cfg.data, "train")


def test_a_b_folders_for_label_nc_0(tmp_path):
    label, _, photo = block_example(64, 32)
    save(f"{tmp_path}/train_A/x.png", photo[:, ::-1].copy())
    save(f"{tmp_path}/train_B/x.png", photo)
    source = readers.read_aligned(str(tmp_path), "train", 0, False)
    assert source.examples[0].label.endswith("train_A/x.png")
    rgb_label, _, out = decode.decode_example(record(source.examples[0]), 0, False)
    assert isinstance(rgb_label, Image.Image) and rgb_label.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(rgb_label), photo[:, ::-1])
