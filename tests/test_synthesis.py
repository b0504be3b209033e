"""Synthesis from label maps (pix2pixhd_jax.inference.synthesis) and the `synthesize` CLI's file handling.

One random tiny model with the feature encoder serves every test; the label maps are
37x23 (padded to 40x24 inside) or 40x24, so the generator compiles for one shape here
(the CLI builds its own Synthesizer and compiles again).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import block_example, make_aligned, make_model_workdir
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.errors import SynthesisError
from pix2pixhd_jax.inference import features
from pix2pixhd_jax.inference.files import load_style_json
from pix2pixhd_jax.inference.synthesis import Synthesizer, instance_classes, pad_to_multiple, random_style_index
from pix2pixhd_jax.models.encoder import instance_average_pool

# One xdist worker builds the model and its synthesizer once for all the tests here.
pytestmark = pytest.mark.xdist_group("synthesis")

W, H = 37, 23  # neither a multiple of the tiny generator's factor 4
FULL_LABEL, FULL_INST, _ = block_example(40, 24, block=8, seed=3)
LABEL, INST = FULL_LABEL[:H, :W], FULL_INST[:H, :W]
NO_CLUSTER = int(np.unique(LABEL)[0])  # a class of the map that gets no k-means styles
CLUSTERED = [c for c in range(1, 34) if c != NO_CLUSTER]
N_STYLES = 3


def _clusters(feat_num=3):
    rng = np.random.default_rng(11)
    centers = {c: rng.uniform(-1, 1, size=(N_STYLES, feat_num)).astype(np.float32) for c in CLUSTERED}
    return features.FeatureClusters(centers=centers, feat_num=feat_num)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("model")
    config, variables = make_model_workdir(workdir)
    clusters = _clusters(int(config.model.feat_num))
    features.save_clusters(os.path.join(workdir, features.CLUSTERS_FILE), clusters)
    return str(workdir), config, variables, clusters


@pytest.fixture(scope="module")
def synth(model):
    _, config, variables, clusters = model
    s = Synthesizer(config, variables, clusters)
    assert s.has_encoder and s.feat_num == 3 and s.maps.divisor == 4 and s.maps.label_nc == 35
    return s


def _fmap(synth, label, inst, styles=None, seed=0, sample=0):
    return synth.feature_map(label, inst, synth.style_vectors(label, inst, styles, seed=seed, sample=sample))


# ----- helpers --------------------------------------------------------------------------------
def test_pad_to_multiple_repeats_edges():
    rng = np.random.default_rng(0)
    for a in (rng.integers(0, 255, size=(H, W, 3)).astype(np.uint8), rng.integers(0, 9, size=(H, W))):
        p = pad_to_multiple(a, 4)
        assert p.shape[:2] == (24, 40) and p.shape[2:] == a.shape[2:] and p.dtype == a.dtype
        np.testing.assert_array_equal(p[:H, :W], a)
        np.testing.assert_array_equal(p[H:, :W], np.broadcast_to(a[-1:], (1,) + a.shape[1:]))
        np.testing.assert_array_equal(p[:, W:], np.broadcast_to(p[:, W - 1:W], (24, 3) + a.shape[2:]))
        p8 = pad_to_multiple(a, 8)
        assert p8.shape[:2] == (24, 40)
        p16 = pad_to_multiple(a, 16)
        assert p16.shape[:2] == (32, 48)
        np.testing.assert_array_equal(p16[:H, :W], a)
    even = rng.integers(0, 9, size=(24, 40))
    np.testing.assert_array_equal(pad_to_multiple(even, 4), even)
    assert pad_to_multiple(even, 8).shape == (24, 40)


def test_instance_classes_and_random_style_index():
    classes = instance_classes(LABEL, INST.astype(np.int32))
    assert sorted(classes) == np.unique(INST).tolist()
    for i, c in classes.items():
        assert np.all(LABEL[INST == i] == c)
    picks = [random_style_index(0, 0, pid, 5) for pid in range(200)]
    assert all(0 <= p < 5 for p in picks) and len(set(picks)) == 5
    assert picks == [random_style_index(0, 0, pid, 5) for pid in range(200)]
    assert picks != [random_style_index(1, 0, pid, 5) for pid in range(200)]
    assert picks != [random_style_index(0, 1, pid, 5) for pid in range(200)]


# ----- synthesis --------------------------------------------------------------------------------
def test_odd_size_is_the_crop_of_the_edge_padded_map(synth):
    out = synth.synthesize(LABEL, INST, seed=0)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert out.std() > 0
    padded = synth.synthesize(pad_to_multiple(LABEL, 4), pad_to_multiple(INST, 4), seed=0)
    assert padded.shape == (24, 40, 3)
    np.testing.assert_array_equal(out, padded[:H, :W])
    np.testing.assert_array_equal(synth.synthesize(LABEL, INST, seed=0), out)  # deterministic


def test_bad_label_ids_and_instance_maps(synth):
    bad = LABEL.astype(np.int32).copy()
    bad[5, 7] = 40
    with pytest.raises(SynthesisError, match="label id 40"):
        synth.synthesize(bad, INST)
    bad[5, 7] = -1
    with pytest.raises(SynthesisError, match="label id -1"):
        synth.synthesize(bad, INST)
    bad[5, 7] = 35  # == label_nc: one past the last class
    with pytest.raises(SynthesisError, match="label id 35"):
        synth.synthesize(bad, INST)
    with pytest.raises(SynthesisError, match=r"\(23, 37, 3\)"):
        synth.synthesize(np.stack([LABEL] * 3, -1), INST)
    with pytest.raises(SynthesisError, match=r"\(36, 23\).*\(37, 23\)"):
        synth.synthesize(LABEL, INST[:, :-1])
    with pytest.raises(SynthesisError, match="one size"):
        synth.synthesize_batch([LABEL, FULL_LABEL], [INST, FULL_INST])


def test_random_styles_are_per_instance_and_per_seed(synth, model):
    clusters = model[3]
    fm0 = _fmap(synth, LABEL, INST, seed=0)
    assert fm0.shape == (H, W, 3) and fm0.dtype == np.float32
    np.testing.assert_array_equal(fm0, _fmap(synth, LABEL, INST, seed=0))
    assert not np.array_equal(fm0, _fmap(synth, LABEL, INST, seed=1))
    assert not np.array_equal(fm0, _fmap(synth, LABEL, INST, seed=0, sample=1))
    for pid in np.unique(INST):
        mask = INST == pid
        cls = int(LABEL[mask][0])
        vec = fm0[mask]
        assert np.all(vec == vec[0])  # one vector per instance
        if cls == NO_CLUSTER:
            assert np.all(vec == 0)  # a class without clusters: zeros
        else:
            assert any(np.array_equal(vec[0], c) for c in clusters.centers[cls])

    # Another instance map where one object changed class: the others keep their styles.
    victim = int(INST[0, 0])
    other = next(c for c in CLUSTERED if c != LABEL[0, 0])
    label2, inst2 = LABEL.copy(), INST.astype(np.int32).copy()
    label2[INST == victim], inst2[INST == victim] = other, other * 1000 + 999
    before, after = synth.style_vectors(LABEL, INST, seed=0), synth.style_vectors(label2, inst2, seed=0)
    assert victim not in after and other * 1000 + 999 in after
    for pid, vec in before.items():
        if pid != victim:
            np.testing.assert_array_equal(after[pid], vec)


def test_setting_one_style_changes_only_that_instance(synth, model):
    clusters = model[3]
    pid = next(int(i) for i in np.unique(INST) if LABEL[INST == i][0] != NO_CLUSTER)
    cls = int(LABEL[INST == pid][0])
    mask = INST == pid
    base = _fmap(synth, LABEL, INST)
    drawn = random_style_index(0, 0, pid, N_STYLES)
    np.testing.assert_array_equal(base[mask][0], clusters.centers[cls][drawn])
    chosen = (drawn + 1) % N_STYLES
    styled = _fmap(synth, LABEL, INST, {pid: chosen})
    np.testing.assert_array_equal(np.any(styled != base, -1), mask)
    np.testing.assert_array_equal(styled[mask], np.broadcast_to(clusters.centers[cls][chosen], (mask.sum(), 3)))
    vec = [0.5, -0.25, 0.75]
    styled = _fmap(synth, LABEL, INST, {pid: np.int64(chosen)})  # numpy ints are cluster indices too
    np.testing.assert_array_equal(np.any(styled != base, -1), mask)
    styled = _fmap(synth, LABEL, INST, {pid: vec})
    np.testing.assert_array_equal(np.any(styled != base, -1), mask)
    np.testing.assert_allclose(styled[mask], np.broadcast_to(np.float32(vec), (mask.sum(), 3)))
    # ... and the photo changes.
    assert not np.array_equal(synth.synthesize(LABEL, INST, {pid: vec}), synth.synthesize(LABEL, INST))


def test_style_errors(synth, model):
    _, config, variables, clusters = model
    pid = next(int(i) for i in np.unique(INST) if LABEL[INST == i][0] != NO_CLUSTER)
    plain = next(int(i) for i in np.unique(INST) if LABEL[INST == i][0] == NO_CLUSTER)
    with pytest.raises(SynthesisError, match=f"instance {pid}: a style vector of 2 values.*feat_num=3"):
        synth.style_vectors(LABEL, INST, {pid: [0.1, 0.2]})
    with pytest.raises(UserError, match=f"style {N_STYLES + 4} of class"):
        synth.style_vectors(LABEL, INST, {pid: N_STYLES + 4})
    with pytest.raises(UserError, match="style -1 of class"):
        synth.style_vectors(LABEL, INST, {pid: -1})
    with pytest.raises(UserError, match=f"class {NO_CLUSTER} has no clusters"):
        synth.style_vectors(LABEL, INST, {plain: 0})
    no_clusters = Synthesizer(config, variables)
    with pytest.raises(SynthesisError, match="no clusters file"):
        no_clusters.style_vectors(LABEL, INST, {pid: 0})
    assert all(np.all(v == 0) for v in no_clusters.style_vectors(LABEL, INST).values())
    np.testing.assert_array_equal(no_clusters.style_vectors(LABEL, INST, {pid: [1, 2, 3]})[pid], [1, 2, 3])
    with pytest.raises(SynthesisError, match="clusters have 5 features"):
        Synthesizer(config, variables, _clusters(feat_num=5))


def test_encode_styles_is_the_instance_mean_of_the_encoder(synth, model):
    variables = model[2]
    photo = np.random.default_rng(4).integers(0, 256, size=(24, 40, 3)).astype(np.uint8)
    inst = FULL_INST.astype(np.int32)
    styles = synth.encode_styles(photo, FULL_LABEL, inst)
    assert sorted(styles) == np.unique(inst).tolist()
    e_vars = {"params": variables["encoder"]["params"]}
    if variables["encoder"].get("batch_stats"):
        e_vars["batch_stats"] = variables["encoder"]["batch_stats"]
    x = jnp.asarray(photo[None].astype(np.float32) / 127.5 - 1.0)
    raw = jax.jit(lambda v, x: synth.nets.E.apply(v, x, train=False))(e_vars, x)
    pooled = np.asarray(instance_average_pool(raw, jnp.asarray(inst[None])))[0]
    assert np.abs(np.asarray(raw)).max() > 0
    for pid, vec in styles.items():
        assert vec.shape == (3,)
        y, x_ = np.argwhere(inst == pid)[0]
        np.testing.assert_allclose(vec, pooled[y, x_], atol=1e-5)
    assert len({tuple(np.round(v, 6)) for v in styles.values()}) > 1
    # Feeding them back puts each instance's own feature on its pixels.
    np.testing.assert_allclose(_fmap(synth, FULL_LABEL, inst, styles), pooled, atol=1e-5)

    # Odd sizes (padded inside), and without an instance map one style per class.
    styles = synth.encode_styles(photo[:H, :W], LABEL, INST)
    assert sorted(styles) == np.unique(INST).tolist()
    by_class = synth.encode_styles(photo[:H, :W], LABEL)
    assert sorted(by_class) == np.unique(LABEL).tolist()
    with pytest.raises(SynthesisError, match="same size"):
        synth.encode_styles(photo, LABEL, INST)


def test_samples_differ_under_random_styles(synth):
    s0 = synth.synthesize(LABEL, INST, seed=0, sample=0)
    s1 = synth.synthesize(LABEL, INST, seed=0, sample=1)
    assert not np.array_equal(s0, s1)
    np.testing.assert_array_equal(synth.synthesize(LABEL, INST, seed=0, sample=1), s1)
    batch = synth.synthesize_batch([LABEL], [INST], seed=0, sample=1)
    assert batch.shape == (1, H, W, 3)
    np.testing.assert_array_equal(batch[0], s1)


# ----- style files --------------------------------------------------------------------------------
def test_load_style_json_forms(tmp_path):
    path = tmp_path / "styles.json"
    path.write_text(json.dumps({"26001": 3, "7": [0.1, 0.2, 0.3]}))
    assert load_style_json(str(path)) == {None: {26001: 3, 7: [0.1, 0.2, 0.3]}}
    path.write_text(json.dumps({"scene_000": {"26001": 1}, "scene_001": {"7": [0, -1.5, 2]}}))
    assert load_style_json(str(path)) == {"scene_000": {26001: 1}, "scene_001": {7: [0, -1.5, 2]}}


@pytest.mark.parametrize("text,what", [
    ("{not json", "cannot read"),
    ("[1, 2]", "holds a list"),
    ('{"car": 3}', "'car' is not an instance id"),
    ('{"26001": "red"}', "neither an index"),
    ('{"26001": true}', "neither an index"),
    ('{"26001": 1.5}', "neither an index"),
    ('{"26001": -2}', "index -2 is negative"),
    ('{"26001": [0.1, "a"]}', "must hold numbers"),
    ('{"scene_000": {"x1": 2}}', "'x1' is not an instance id"),
])
def test_load_style_json_errors_name_the_file(tmp_path, text, what):
    path = tmp_path / "bad_styles.json"
    path.write_text(text)
    with pytest.raises(UserError) as e:
        load_style_json(str(path))
    assert str(path) in str(e.value) and what in str(e.value)
    with pytest.raises(UserError, match="cannot read"):
        load_style_json(str(tmp_path / "missing.json"))


# ----- the CLI --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    examples = make_aligned(str(root), "test", n=3, w=W, h=H, seed=5)
    return root, examples


def _run(model, scenes, out, *extra, resize="none"):
    """The CLI on the scenes; resize none: at their own (odd) size, padded and cropped back."""
    root, _ = scenes
    return main(["synthesize", "--workdir", model[0], "--label", str(root / "test_label"),
                 "--inst", str(root / "test_inst"), "--out", str(out), "--batch-size", "2", "--quiet",
                 "--resize", resize, *extra])


def _read(path):
    img = Image.open(path)
    assert img.size == (W, H) and img.mode == "RGB"
    return np.asarray(img)


def _close(a, b):
    """Equal up to float rounding between batch sizes: at most 1 off on 1% of the values."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_cli_synthesizes_a_folder(model, scenes, synth, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(model, scenes, out, "--seed", "2") == 0
    assert "3 photos written" in capsys.readouterr().out
    _, examples = scenes
    assert sorted(os.listdir(out)) == [f"{name}_synthesized.png" for name, *_ in examples]
    for name, label, inst, _ in examples:
        _close(_read(out / f"{name}_synthesized.png"), synth.synthesize(label, inst, seed=2))


def test_cli_scales_maps_as_the_models_test_transform_by_default(model, scenes, synth, tmp_path):
    # The model's config: scale_width to data.load_size (256): the 37x23 maps become 256x159.
    out = tmp_path / "scaled"
    assert _run(model, scenes, out, "--seed", "2", resize="config") == 0
    _, examples = scenes
    assert synth.maps.test_size(W, H) == (256, int(256 * H / W))
    for name, label, inst, _ in examples:
        got = np.asarray(Image.open(out / f"{name}_synthesized.png"))
        scaled_label, scaled_inst, _ = synth.maps.prepare(label, inst)
        assert got.shape == scaled_label.shape + (3,) == (int(256 * H / W), 256, 3)
        _close(got, synth.synthesize(scaled_label, scaled_inst, seed=2))


def test_cli_num_samples(model, scenes, tmp_path):
    out = tmp_path / "out"
    assert _run(model, scenes, out, "--num-samples", "2") == 0
    _, examples = scenes
    assert sorted(os.listdir(out)) == sorted(f"{name}_sample{k:02d}.png" for name, *_ in examples for k in (0, 1))
    assert any(not np.array_equal(_read(out / f"{name}_sample00.png"), _read(out / f"{name}_sample01.png"))
               for name, *_ in examples)


def test_cli_encoded_and_json_styles(model, scenes, synth, tmp_path):
    root, examples = scenes
    out = tmp_path / "encoded"
    assert _run(model, scenes, out, "--style", f"encode:{root / 'test_img'}") == 0
    assert len(os.listdir(out)) == len(examples)
    for name, label, inst, photo in examples:
        expected = synth.synthesize(label, inst, synth.encode_styles(photo, label, inst))
        _close(_read(out / f"{name}_synthesized.png"), expected)

    name, label, inst, _ = examples[0]
    pid = int(inst[0, 0])
    style_file = tmp_path / "styles.json"
    style_file.write_text(json.dumps({name: {str(pid): [1.0, -1.0, 0.5]}}))
    out = tmp_path / "json"
    assert _run(model, scenes, out, "--style", str(style_file), "--seed", "2") == 0
    _close(_read(out / f"{name}_synthesized.png"), synth.synthesize(label, inst, {pid: [1.0, -1.0, 0.5]}, seed=2))


def test_cli_errors_exit_2(model, scenes, tmp_path, capsys):
    missing = tmp_path / "no_such_labels"
    assert main(["synthesize", "--workdir", model[0], "--label", str(missing), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(missing) in err
    assert _run(model, scenes, tmp_path / "o", "--num-samples", "0") == 2
    assert "--num-samples 0" in capsys.readouterr().err
    assert _run(model, scenes, tmp_path / "o", "--style", "fancy") == 2
    assert "'fancy'" in capsys.readouterr().err


def test_synthesis_compiles_once_per_shape_and_builds_no_gradients(model, monkeypatch):
    # Counted on lax's ops (set before the first trace: jit reuses traces): the CPU path
    # runs a transposed conv as four phase convs.
    monkeypatch.setenv("PIX2PIXHD_CPU_CONV", "0")
    _, config, variables, clusters = model
    s = Synthesizer(config, variables, clusters)  # a fresh jit cache
    a, _, _ = block_example(37, 23, block=8, seed=5)
    b, _, _ = block_example(37, 23, block=8, seed=6)
    s.synthesize(a)
    s.synthesize(b, seed=3, styles=None)
    s.synthesize(a, sample=2)
    assert s._generate._cache_size() == 1  # other maps, seeds, samples and styles: the same program
    s.synthesize(block_example(44, 20, block=4, seed=7)[0])
    assert s._generate._cache_size() == 2
    # the program is G's forward pass only: one convolution per conv layer (a backward pass
    # would add two more per layer), and E does not run (the styles come in as features).
    label = jnp.zeros((1, 24, 40), jnp.int32)
    feats = jnp.zeros((1, 24, 40, 3))
    jaxpr = str(jax.make_jaxpr(s.program)(s.g_vars, label, label, feats))
    kernels = [p for p, _ in jax.tree_util.tree_leaves_with_path(s.g_vars["params"]) if "kernel" in str(p[-1])]
    assert jaxpr.count("conv_general_dilated[") == len(kernels)
