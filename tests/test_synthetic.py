"""Synthetic street scenes: determinism, label/instance consistency, styles, writer."""

import functools
import json
import os

import numpy as np
import pytest
from PIL import Image

from pix2pixhd_jax.data import synthetic
from pix2pixhd_jax.data.synthetic import CLASS_IDS, INSTANCE_CLASSES, STYLES, generate_scene, write_dataset

W, H = 256, 128
N_SCENES = 40


@functools.lru_cache(maxsize=None)
def scene(index, seed=0, width=W, height=H):
    return generate_scene(width, height, seed=seed, index=index)


def scenes(n=N_SCENES):
    return [scene(i) for i in range(n)]


# ---------------------------------------------------------------------------- determinism

def test_same_arguments_give_identical_scene():
    a = generate_scene(W, H, seed=3, index=7)
    b = generate_scene(W, H, seed=3, index=7)
    for field in ("label", "inst", "image"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.instances == b.instances


@pytest.mark.parametrize("other", [dict(seed=3, index=8), dict(seed=4, index=7), dict(seed=3, index=7, phase="test")])
def test_different_seed_index_or_phase_give_different_scene(other):
    a = generate_scene(W, H, seed=3, index=7)
    b = generate_scene(W, H, **other)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.label, b.label)


def read_png(path):
    return np.array(Image.open(path))


def test_write_dataset_is_independent_of_worker_count(tmp_path):
    one = write_dataset(tmp_path / "one", 3, 2, W, H, seed=5, workers=1, progress=False)
    two = write_dataset(tmp_path / "two", 3, 2, W, H, seed=5, workers=2, progress=False)
    assert one["workers"] == 1 and two["workers"] == 2
    for phase, n in (("train", 3), ("test", 2)):
        for i in range(n):
            name = f"synthetic_{phase}_{i:06d}.png"
            for kind in ("label", "inst", "img"):
                a = read_png(tmp_path / "one" / f"{phase}_{kind}" / name)
                b = read_png(tmp_path / "two" / f"{phase}_{kind}" / name)
                np.testing.assert_array_equal(a, b)
        # ... and equal to a scene generated directly.
        direct = generate_scene(W, H, seed=5, index=n - 1, phase=phase)
        np.testing.assert_array_equal(read_png(tmp_path / "two" / f"{phase}_img" / f"synthetic_{phase}_{n - 1:06d}.png"),
                                      direct.image)
        for kind in ("styles.jsonl",):
            a = (tmp_path / "one" / f"{phase}_{kind}").read_text()
            assert a == (tmp_path / "two" / f"{phase}_{kind}").read_text()


# ---------------------------------------------------------------------------- labels and ids

def test_labels_are_the_twelve_classes_and_match_instance_ids():
    allowed = np.array(sorted(CLASS_IDS.values()))
    thing_labels = [CLASS_IDS[c] for c in INSTANCE_CLASSES]
    for s in scenes(12):
        assert s.label.shape == (H, W) and s.label.dtype == np.uint8
        assert s.inst.shape == (H, W) and s.inst.dtype == np.uint16
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert np.isin(s.label, allowed).all()
        inst = s.inst.astype(np.int32)
        np.testing.assert_array_equal(s.label, np.where(inst < 1000, inst, inst // 1000))
        is_thing = np.isin(s.label, thing_labels)
        assert (inst[is_thing] >= 1000).all()
        assert (inst[~is_thing] < 1000).all()


def test_instance_numbers_are_contiguous_per_class():
    for s in scenes(12):
        for cls in INSTANCE_CLASSES:
            ids = [d["id"] for d in s.instances if d["class"] == cls]
            assert ids == [CLASS_IDS[cls] * 1000 + k for k in range(len(ids))]


def touching_pairs(inst, label_id):
    """Pairs of different instance ids of one class that are 4-neighbours."""
    pairs = set()
    lo, hi = label_id * 1000, label_id * 1000 + 999
    for a, b in ((inst[:, 1:], inst[:, :-1]), (inst[1:, :], inst[:-1, :])):
        both = (a >= lo) & (a <= hi) & (b >= lo) & (b <= hi) & (a != b)
        pairs.update(zip(a[both].tolist(), b[both].tolist()))
    return pairs


def touching_fraction(label_id, n_scenes=20, min_area=20):
    """Fraction of a class's instances that share an edge with another instance of the class."""
    touching = total = 0
    for s in scenes(n_scenes):
        ids = {d["id"] for d in s.instances if d["label"] == label_id and d["area"] >= min_area}
        in_pairs = {i for pair in touching_pairs(s.inst, label_id) for i in pair}
        total += len(ids)
        touching += len(ids & in_pairs)
    return touching / max(total, 1), total


@pytest.mark.parametrize("cls", INSTANCE_CLASSES)
def test_instances_of_one_class_touch(cls):
    # Rows of parked cars and groups of people: only the instance map separates them.
    fraction, total = touching_fraction(CLASS_IDS[cls])
    assert total >= 40
    assert fraction >= 0.6, (cls, fraction)


def test_metadata_matches_instance_map():
    for s in scenes(12):
        ids, areas = np.unique(s.inst, return_counts=True)
        assert [d["id"] for d in s.instances] == ids.tolist()
        assert [d["area"] for d in s.instances] == areas.tolist()
        for d in s.instances:
            label = d["id"] if d["id"] < 1000 else d["id"] // 1000
            assert d["label"] == label == CLASS_IDS[d["class"]]
            assert 0 <= d["style"] < len(STYLES[d["class"]])
            assert d["style_name"] == STYLES[d["class"]][d["style"]]


def test_style_tables_meet_minimum_variety():
    assert set(STYLES) == set(CLASS_IDS)
    minimum = {"car": 5, "person": 4, "road": 2, "sidewalk": 2, "building": 3, "vegetation": 2, "terrain": 2,
               "sky": 3, "fence": 2}
    for cls, n in minimum.items():
        assert len(STYLES[cls]) >= n and len(set(STYLES[cls])) == len(STYLES[cls]), cls


# ---------------------------------------------------------------------------- styles in the photo

def style_samples(cls, min_area):
    """(scene index, style, mean RGB) for every region of `cls` with enough pixels."""
    out = []
    for i, s in enumerate(scenes()):
        for d in s.instances:
            if d["class"] == cls and d["area"] >= min_area:
                mean = s.image[s.inst == d["id"]].reshape(-1, 3).mean(0)
                out.append((i, d["style"], mean))
    return out


def nearest_centroid_accuracy(samples):
    """Centroids from the first half of the scenes, accuracy on the second half."""
    half = N_SCENES // 2
    train = [(st, m) for i, st, m in samples if i < half]
    test = [(st, m) for i, st, m in samples if i >= half]
    styles = sorted({st for st, _ in train})
    centroids = np.stack([np.mean([m for st, m in train if st == k], axis=0) for k in styles])
    hits = [styles[int(np.argmin(((centroids - m) ** 2).sum(1)))] == st for st, m in test]
    return float(np.mean(hits)), len(test), len(styles)


@pytest.mark.parametrize("cls, min_area, min_styles", [
    ("car", 40, 5), ("person", 30, 4), ("sky", 200, 3), ("road", 200, 2), ("sidewalk", 100, 2),
    ("building", 200, 3), ("vegetation", 100, 2), ("terrain", 50, 2)])
def test_style_is_recoverable_from_mean_colour(cls, min_area, min_styles):
    accuracy, n_test, n_styles = nearest_centroid_accuracy(style_samples(cls, min_area))
    assert n_styles >= min_styles and n_test >= 10
    assert accuracy >= 0.8, (cls, accuracy)


def test_all_styles_get_used():
    used = {cls: set() for cls in STYLES}
    for s in scenes():
        for d in s.instances:
            used[d["class"]].add(d["style"])
    for cls in ("car", "person", "road", "sidewalk", "building", "sky", "vegetation", "terrain"):
        assert used[cls] == set(range(len(STYLES[cls]))), cls


# ---------------------------------------------------------------------------- sizes and validation

@pytest.mark.parametrize("width, height", [(128, 64), (2048, 1024), (300, 170)])
def test_supported_sizes(width, height):
    s = generate_scene(width, height, index=1)
    assert s.label.shape == (height, width) and s.label.dtype == np.uint8
    assert s.inst.shape == (height, width) and s.inst.dtype == np.uint16
    assert s.image.shape == (height, width, 3) and s.image.dtype == np.uint8
    assert len(np.unique(s.label)) >= 6


@pytest.mark.parametrize("width, height, bad", [(100, 50, "width=100"), (128, 50, "height=50"),
                                                (5000, 256, "width=5000"), (256.0, 128, "width=256.0")])
def test_bad_sizes_raise(width, height, bad):
    with pytest.raises(ValueError, match=bad):
        generate_scene(width, height)


def test_write_dataset_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_train=-1"):
        write_dataset(tmp_path, -1, 1, W, H, progress=False)
    with pytest.raises(ValueError, match="num_test"):
        write_dataset(tmp_path, 1, -2, W, H, progress=False)
    with pytest.raises(ValueError, match="width=100"):
        write_dataset(tmp_path, 1, 1, 100, 50, progress=False)
    with pytest.raises(ValueError, match="workers=0"):
        write_dataset(tmp_path, 1, 1, W, H, workers=0, progress=False)


# ---------------------------------------------------------------------------- writer

def test_write_dataset_layout_and_files(tmp_path):
    out = tmp_path / "synthetic"
    summary = write_dataset(out, 2, 1, W, H, seed=1, workers=1, progress=False)
    assert summary["num_train"] == 2 and summary["num_test"] == 1 and summary["seconds"] >= 0
    for phase, n in (("train", 2), ("test", 1)):
        names = [f"synthetic_{phase}_{i:06d}.png" for i in range(n)]
        for kind in ("label", "inst", "img"):
            assert sorted(os.listdir(out / f"{phase}_{kind}")) == names
        rows = [json.loads(line) for line in (out / f"{phase}_styles.jsonl").read_text().splitlines()]
        assert [r["name"] for r in rows] == [n[:-4] for n in names]
        for i, row in enumerate(rows):
            s = generate_scene(W, H, seed=1, index=i, phase=phase)
            assert row["instances"] == s.instances
            label = Image.open(out / f"{phase}_label" / names[i])
            assert label.mode == "L"
            np.testing.assert_array_equal(np.array(label), s.label)
            inst = np.array(Image.open(out / f"{phase}_inst" / names[i]))
            assert inst.dtype in (np.uint16, np.int32)  # Pillow reads 16-bit PNGs as I;16 or I
            np.testing.assert_array_equal(inst.astype(np.int64), s.inst.astype(np.int64))
            assert inst.max() >= 1000 or not (s.inst >= 1000).any()
            img = Image.open(out / f"{phase}_img" / names[i])
            assert img.mode == "RGB"
            np.testing.assert_array_equal(np.array(img), s.image)
    info = json.loads((out / "synthetic_info.json").read_text())
    assert info["generator"] == synthetic.GENERATOR_NAME
    assert (info["seed"], info["width"], info["height"], info["num_train"], info["num_test"]) == (1, W, H, 2, 1)
    assert info["classes"]["car"] == {"label_id": 26, "has_instances": True, "styles": list(STYLES["car"])}
    assert info["classes"]["road"]["has_instances"] is False
    assert set(info["classes"]) == set(CLASS_IDS)


def test_write_dataset_overwrites(tmp_path):
    write_dataset(tmp_path, 1, 0, W, H, seed=1, workers=1, progress=False)
    write_dataset(tmp_path, 1, 0, W, H, seed=2, workers=1, progress=False)
    np.testing.assert_array_equal(read_png(tmp_path / "train_img" / "synthetic_train_000000.png"),
                                  generate_scene(W, H, seed=2, index=0).image)
    assert (tmp_path / "test_styles.jsonl").read_text() == ""
