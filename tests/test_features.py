"""Per-instance features, per-class k-means, the clusters file and `encode-features`."""

import json

import numpy as np
import pytest

from conftest import make_aligned, make_model_workdir
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.inference import features

# One xdist worker builds the encoded features once for all the tests here.
pytestmark = pytest.mark.xdist_group("features")


def test_instance_rows_are_the_instance_average_pool():
    from pix2pixhd_jax.models import instance_average_pool

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(12, 10, 3)).astype(np.float32)
    ids = rng.choice([7, 26000, 26001, 24003], size=(12, 10)).astype(np.int32)
    uniq, means, counts = features.instance_rows(feats, ids)
    pooled = np.asarray(instance_average_pool(feats[None], ids[None]))[0]
    assert list(uniq) == sorted(set(ids.ravel().tolist()))
    for u, m, c in zip(uniq, means, counts):
        mask = ids == u
        assert c == mask.sum()
        np.testing.assert_allclose(pooled[mask], np.broadcast_to(m, pooled[mask].shape), atol=1e-5)


def test_label_of_instance_follows_cityscapes():
    np.testing.assert_array_equal(features.label_of_instance([7, 26000, 26013, 33999, 999]), [7, 26, 26, 33, 999])


def _blobs(rng, centres, n, spread=0.02):
    labels = rng.integers(len(centres), size=n)
    return np.asarray(centres)[labels] + rng.normal(0, spread, (n, len(centres[0]))), labels


def test_kmeans_per_class_recovers_separated_styles_and_drops_small_instances():
    rng = np.random.default_rng(1)
    car, car_truth = _blobs(rng, [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]], 60)
    road, road_truth = _blobs(rng, [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]], 30)
    feats = np.concatenate([car, road]).astype(np.float32)
    labels = np.asarray([26] * 60 + [7] * 30)
    areas = np.full(90, 0.05)
    areas[:5] = 1.0 / 64  # not larger than 1/64: dropped, as the reference does
    centers, counts, assignment = features.cluster_features(labels, feats, areas, n_clusters=3)
    assert sorted(centers) == [7, 26]
    assert centers[26].shape == (3, 3) and centers[7].shape == (3, 3)  # K = min(N, n_clusters) per class
    assert (assignment[:5] == -1).all() and (assignment[5:] >= 0).all()
    assert counts[26].sum() == 55 and counts[7].sum() == 30
    # each cluster holds one true style only
    for truth, rows in ((car_truth[5:], slice(5, 60)), (road_truth, slice(60, 90))):
        for c in np.unique(assignment[rows]):
            assert len(np.unique(truth[assignment[rows] == c])) == 1


def test_kmeans_k_is_at_most_the_number_of_instances():
    feats = np.asarray([[0.0, 0, 0], [1, 1, 1]], np.float32)
    centers, counts, _ = features.cluster_features([26, 26], feats, [0.5, 0.5], n_clusters=10)
    assert centers[26].shape == (2, 3)


def test_clusters_file_round_trip(tmp_path):
    clusters = features.FeatureClusters(
        centers={7: np.arange(6, dtype=np.float32).reshape(2, 3), 26: -np.ones((4, 3), np.float32)},
        feat_num=3, counts={7: np.asarray([5, 6]), 26: np.asarray([1, 2, 3, 4])}, meta={"step": 12})
    path = features.save_clusters(str(tmp_path / features.CLUSTERS_FILE), clusters)
    back = features.load_clusters(path)
    assert back.feat_num == 3 and back.meta["step"] == 12 and back.meta["format"] == features.FORMAT
    assert sorted(back.centers) == [7, 26]
    np.testing.assert_array_equal(back.centers[7], clusters.centers[7])
    np.testing.assert_array_equal(back.counts[26], [1, 2, 3, 4])
    assert back.num_styles(26) == 4 and back.num_styles(11) == 0
    np.testing.assert_array_equal(back.style(7, 1), [3, 4, 5])
    with pytest.raises(features.FeaturesError, match="style 4 of class 7"):
        back.style(7, 4)
    # no pickle inside: loads with allow_pickle=False (load_clusters already does)
    assert not list(tmp_path.glob("*.tmp*"))


def test_clusters_file_errors(tmp_path):
    with pytest.raises(features.FeaturesError, match="encode-features"):
        features.load_clusters(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", meta=np.asarray(json.dumps({"format": "something else"})))
    with pytest.raises(features.FeaturesError, match="format"):
        features.load_clusters(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "bad.npz", meta=np.asarray(json.dumps({"format": features.FORMAT, "feat_num": 3})),
             centers_7=np.zeros((2, 4)))
    with pytest.raises(features.FeaturesError, match=r"expected \(K, 3\)"):
        features.load_clusters(str(tmp_path / "bad.npz"))


def test_import_reference_clusters(tmp_path):
    # What the reference's encode_features.py writes: np.save of a {label: centres} dict.
    ref = {26: np.random.default_rng(0).normal(size=(10, 3)), 24: np.zeros((3, 3)), 7: np.zeros((0, 3))}
    path = str(tmp_path / "features_clustered_010.npy")
    np.save(path, ref)
    clusters = features.import_reference_clusters(path, feat_num=3)
    assert sorted(clusters.centers) == [24, 26]  # an empty class carries no styles
    np.testing.assert_allclose(clusters.centers[26], ref[26], rtol=1e-6)
    with pytest.raises(features.FeaturesError, match="feat_num"):
        features.import_reference_clusters(path, feat_num=5)
    np.save(tmp_path / "list.npy", np.zeros((3, 3)))
    with pytest.raises(features.FeaturesError, match="dict"):
        features.import_reference_clusters(str(tmp_path / "list.npy"))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A tiny random model with the encoder, 6 block scenes, `encode-features` run through the CLI."""
    root = tmp_path_factory.mktemp("features")
    data, workdir = root / "data", root / "run"
    make_aligned(str(data), "train", n=6, w=64, h=32)
    make_model_workdir(workdir, f"data.dataroot={data}", "data.resize_or_crop=none", "train.batch_size=4")
    assert main(["encode-features", "--workdir", str(workdir), "--n-clusters", "3", "--quiet"]) == 0
    return workdir, data


def test_encode_features_cli_writes_clusters_and_instances(encoded):
    workdir, data = encoded
    clusters = features.load_clusters(str(workdir / features.CLUSTERS_FILE))
    with np.load(workdir / features.INSTANCES_FILE) as f:
        rows = {k: f[k] for k in f.files}
    # 6 scenes of 64x32 in 16x16 blocks: 8 instances each, every one 1/8 of the image (> 1/64)
    assert len(rows["pool_id"]) == 48 and (rows["cluster"] >= 0).all()
    np.testing.assert_allclose(rows["area"], 1 / 8)
    np.testing.assert_array_equal(rows["label"], rows["pool_id"] // 1000)
    assert sorted(set(rows["name"].tolist())) == [f"scene_{i:03d}" for i in range(6)]
    for label, centers in clusters.centers.items():
        n = int((rows["label"] == label).sum())
        assert centers.shape == (min(n, 3), 3)
        assert clusters.counts[label].sum() == n
        # every centre is the mean of its members
        for k, centre in enumerate(centers):
            members = rows["feature"][(rows["label"] == label) & (rows["cluster"] == k)]
            np.testing.assert_allclose(centre, members.mean(0), atol=1e-4)


def test_encode_features_matches_the_encoder_on_one_image(encoded):
    from PIL import Image

    from pix2pixhd_jax.inference.synthesis import Synthesizer

    workdir, data = encoded
    synth = Synthesizer.from_workdir(str(workdir))
    assert synth.clusters is not None
    label = np.asarray(Image.open(data / "train_label" / "scene_002.png"))
    inst = np.asarray(Image.open(data / "train_inst" / "scene_002.png"))
    photo = np.asarray(Image.open(data / "train_img" / "scene_002.png"))
    expected = synth.encode_styles(photo, label, inst)
    with np.load(workdir / features.INSTANCES_FILE) as f:
        sel = f["name"] == "scene_002"
        got = dict(zip(f["pool_id"][sel].tolist(), f["feature"][sel]))
    assert sorted(got) == sorted(expected)
    for k in got:
        np.testing.assert_allclose(got[k], expected[k], atol=1e-4)


def test_encode_features_refuses_a_model_without_encoder(tmp_path, capsys):
    make_model_workdir(tmp_path, "model.instance_feat=False")
    assert main(["encode-features", "--workdir", str(tmp_path), "--quiet"]) == 2
    assert "without the feature encoder" in capsys.readouterr().err


def test_encode_features_imports_the_reference_file(encoded, tmp_path):
    workdir, _ = encoded
    npy = tmp_path / "features_clustered_010.npy"
    np.save(npy, {26: np.ones((2, 3)), 7: np.zeros((1, 3))})
    other = tmp_path / "run"
    import shutil

    shutil.copytree(workdir, other)
    assert main(["encode-features", "--workdir", str(other), "--import-reference", str(npy)]) == 0
    clusters = features.load_clusters(str(other / features.CLUSTERS_FILE))
    assert sorted(clusters.centers) == [7, 26] and clusters.meta["imported"]


def test_encode_features_on_two_devices_gives_the_same_rows(encoded, tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from conftest import ROOT, with_test_xla_flags

    workdir, _ = encoded
    other = tmp_path / "run2"
    shutil.copytree(workdir, other)
    env = dict(os.environ, XLA_FLAGS=with_test_xla_flags("--xla_force_host_platform_device_count=2"),
               JAX_PLATFORMS="cpu")
    code = ("import jax; assert jax.device_count() == 2; from pix2pixhd_jax.cli import main; "
            f"raise SystemExit(main(['encode-features', '--workdir', {str(other)!r}, '--n-clusters', '3', "
            "'--batch-size', '4', '--quiet']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(workdir / features.INSTANCES_FILE) as a, np.load(other / features.INSTANCES_FILE) as b:
        assert a["name"].tolist() == b["name"].tolist()
        np.testing.assert_array_equal(a["pool_id"], b["pool_id"])
        np.testing.assert_allclose(a["feature"], b["feature"], atol=1e-5)
