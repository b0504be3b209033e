"""Synthesis with an OASIS model (a SPADE G with 3D noise and a moving average of G): the workdir's
moving average synthesizes, its noise is drawn per (seed, sample) or given, and `synthesize
--num-samples` writes that many pictures per map; a model that draws nothing at random refuses
--num-samples > 1.

One tiny OASIS model trained two steps serves every test (conftest.make_oasis_workdir); the maps
are 37x23 (padded to 40x24 inside: the model's factor is 4).
"""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import block_example, make_aligned, make_model_workdir, make_oasis_workdir
from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.errors import SynthesisError
from pix2pixhd_jax.inference.synthesis import Synthesizer, noise_vector
from pix2pixhd_jax.training.oasis_step import OASISTrainState

# One xdist worker builds the trained OASIS workdir once for all the tests here.
pytestmark = pytest.mark.xdist_group("oasis_synthesis")

W, H = 37, 23
LABEL = block_example(40, 24, block=8, seed=3)[0][:H, :W]


@pytest.fixture(scope="module")
def oasis(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("oasis")
    config, state = make_oasis_workdir(workdir)
    return str(workdir), config, state


@pytest.fixture(scope="module")
def synth(oasis):
    return Synthesizer.from_workdir(oasis[0])


def variables_of(params, stats):
    return {"generator": {"params": params["generator"], "batch_stats": stats["generator"]}}


def assert_trees_equal(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_workdir_synthesizes_with_the_moving_average_of_g(oasis, synth):
    workdir, config, state = oasis
    ema = variables_of(state.ema_params, state.ema_stats)
    assert_trees_equal(checkpoint.load_network_params(workdir, discriminator=False), ema)
    # init_from (the whole networks) still reads G itself, and D.
    loaded = checkpoint.load_network_params(workdir)
    assert_trees_equal(loaded["generator"], variables_of(state.g_params, state.g_stats)["generator"])
    assert "discriminator" in loaded
    got = synth.synthesize(LABEL, seed=1)
    assert got.shape == (H, W, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, Synthesizer(config, ema).synthesize(LABEL, seed=1))
    # Two steps at lr 0.01 with a decay of 0.9: G's own pictures are others.
    g_own = Synthesizer(config, variables_of(state.g_params, state.g_stats)).synthesize(LABEL, seed=1)
    assert np.abs(got.astype(int) - g_own.astype(int)).mean() > 1


def test_without_a_moving_average_g_synthesizes(oasis, tmp_path):
    _, config, state = oasis
    without = state.replace(ema_params=None, ema_stats=None)  # train.ema_decay=0
    assert isinstance(without, OASISTrainState)
    params, stats = checkpoint.inference_generator(without)
    assert params is state.g_params and stats is state.g_stats
    with checkpoint.train_manager(str(tmp_path), keep=1) as mngr:
        checkpoint.save_state(mngr, 2, without)
        mngr.wait_until_finished()
    checkpoint.write_config(str(tmp_path), config)
    assert_trees_equal(checkpoint.load_network_params(str(tmp_path), discriminator=False),
                       variables_of(state.g_params, state.g_stats))
    assert checkpoint.inference_generator({"g_params": 1, "g_stats": 2}) == (1, 2)
    assert checkpoint.inference_generator({"g_params": 1, "g_stats": 2, "ema_params": 3, "ema_stats": 4}) == (3, 4)


def test_noise_is_drawn_per_seed_and_sample_and_can_be_given(synth):
    assert synth.z_dim == 4 and synth.random_samples("none")
    base = synth.synthesize(LABEL, seed=1)
    np.testing.assert_array_equal(base, synth.synthesize(LABEL, seed=1, sample=0))
    others = [synth.synthesize(LABEL, seed=2), synth.synthesize(LABEL, seed=1, sample=1)]
    for other in others:
        assert np.abs(base.astype(int) - other.astype(int)).mean() > 0.5
    # The drawn noise is noise_vector(seed, sample), one z per picture, spread over its pixels.
    z = noise_vector(1, 1, 4)
    assert z.shape == (4,) and z.dtype == np.float32
    np.testing.assert_array_equal(synth.noise(3, 1, 1), np.stack([z] * 3))
    np.testing.assert_array_equal(synth.synthesize(LABEL, noise=z), others[1])
    np.testing.assert_array_equal(synth.synthesize(LABEL, noise=np.broadcast_to(z, (H, W, 4))), others[1])
    # A picture does not depend on the maps beside it in the batch.
    second = block_example(40, 24, block=8, seed=4)[0][:H, :W]
    batch = synth.synthesize_batch([second, LABEL], seed=1)
    np.testing.assert_array_equal(batch[1], base)
    # Noise that varies by region changes the picture there and not far from it.
    regional = np.broadcast_to(z, (H, W, 4)).copy()
    regional[:, 30:] = noise_vector(9, 0, 4)
    mixed = synth.synthesize(LABEL, noise=regional).astype(int)
    assert np.abs(mixed[:, 30:] - others[1][:, 30:]).mean() > 0.5
    np.testing.assert_array_equal(mixed[:, :8], others[1][:, :8])  # beyond G's reach of ~20 pixels
    with pytest.raises(SynthesisError, match=r"\(1, 4\)"):
        synth.synthesize(LABEL, noise=np.zeros(3, np.float32))


# ----- the CLI --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    examples = make_aligned(str(root), "test", n=3, w=W, h=H, seed=5)
    return root, examples


def run(workdir, scenes, out, *extra):
    root, _ = scenes
    return main(["synthesize", "--workdir", workdir, "--label", str(root / "test_label"), "--out", str(out),
                 "--batch-size", "2", "--quiet", "--resize", "none", *extra])


def test_cli_num_samples_draws_other_noise_for_each(oasis, synth, scenes, tmp_path):
    out = tmp_path / "samples"
    assert run(oasis[0], scenes, out, "--num-samples", "3", "--seed", "5") == 0
    _, examples = scenes
    assert sorted(os.listdir(out)) == sorted(f"{name}_sample{k:02d}.png" for name, *_ in examples for k in range(3))
    for name, label, _, _ in examples:
        pictures = [np.asarray(Image.open(out / f"{name}_sample{k:02d}.png")) for k in range(3)]
        for k, picture in enumerate(pictures):
            np.testing.assert_array_equal(picture, synth.synthesize(label, seed=5, sample=k))
        assert all(np.abs(pictures[i].astype(int) - pictures[j].astype(int)).mean() > 0.5
                   for i, j in ((0, 1), (0, 2), (1, 2)))
    # The default: one picture per map, sample 0 of seed 0.
    out = tmp_path / "one"
    assert run(oasis[0], scenes, out) == 0
    name, label, _, _ = examples[0]
    assert len(os.listdir(out)) == 3
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_synthesized.png")), synth.synthesize(label))


def test_cli_num_samples_is_refused_for_a_model_without_noise(scenes, tmp_path, capsys):
    workdir = tmp_path / "pix2pixhd"
    make_model_workdir(workdir, "model.instance_feat=False")
    assert run(str(workdir), scenes, tmp_path / "out", "--num-samples", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--num-samples 2" in err and "use --num-samples 1" in err
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_a_style_restyles_one_object_with_its_own_noise(synth):
    """An object given a style (a draw index or z itself) reads its own z over its pixels: the
    picture changes on and near it and nowhere else; the editor's set_style does it."""
    from pix2pixhd_jax.inference.editing import Editor, Scene, dilate

    pid = int(LABEL[0, -1])  # without instance maps an object is a class's region
    mask = LABEL == pid
    base = synth.synthesize(LABEL, seed=1).astype(int)
    drawn = synth.synthesize(LABEL, styles={pid: 3}, seed=1)
    z = noise_vector(1, 0, 4, pid, 3)
    noise = np.where(mask[..., None], z, noise_vector(1, 0, 4))
    np.testing.assert_array_equal(drawn, synth.synthesize(LABEL, noise=noise))
    np.testing.assert_array_equal(synth.synthesize(LABEL, styles={pid: z}, seed=1), drawn)
    assert np.abs(drawn[mask].astype(int) - base[mask]).mean() > 0.5
    far = ~dilate(mask, 22)  # beyond G's reach of ~20 pixels
    assert far.any()
    np.testing.assert_array_equal(drawn[far], base[far])
    assert not np.array_equal(synth.synthesize(LABEL, styles={pid: 4}, seed=1), drawn)

    editor = Editor(synth, Scene.from_arrays(LABEL), seed=1)
    np.testing.assert_array_equal(editor.render(), base)
    np.testing.assert_array_equal(editor.set_style(pid, 3), drawn)
    np.testing.assert_array_equal(editor.undo(), base)
    with pytest.raises(SynthesisError, match="model.z_dim=4"):
        synth.synthesize(LABEL, styles={pid: [0.5, 0.5]})


def test_cli_style_file_restyles_objects_with_their_own_noise(oasis, synth, scenes, tmp_path, capsys):
    """`synthesize --style STYLES.json` on a model with 3D noise: a draw index or a noise vector per
    object (for every map, or per scene), the pictures the library draws for those styles."""
    import json

    _, examples = scenes
    (name0, label0, _, _), (name1, label1, _, _) = examples[:2]
    pid0, pid1 = int(label0[0, 0]), int(label1[-1, -1])
    z = [0.25, -1.0, 0.5, 2.0]
    styles = tmp_path / "styles.json"
    styles.write_text(json.dumps({name0: {str(pid0): 3}, name1: {str(pid1): z}}))
    out = tmp_path / "styled"
    assert run(oasis[0], scenes, out, "--style", str(styles), "--seed", "2") == 0
    got0 = np.asarray(Image.open(out / f"{name0}_synthesized.png"))
    np.testing.assert_array_equal(got0, synth.synthesize(label0, styles={pid0: 3}, seed=2))
    assert not np.array_equal(got0, synth.synthesize(label0, seed=2))
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name1}_synthesized.png")),
                                  synth.synthesize(label1, styles={pid1: z}, seed=2))

    styles.write_text(json.dumps({str(pid0): [0.5, 0.5]}))
    assert run(oasis[0], scenes, tmp_path / "bad", "--style", str(styles)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(styles) in err and "2 values" in err and "give 4 numbers" in err
    assert run(oasis[0], scenes, tmp_path / "bad2", "--style", "encode:" + str(tmp_path)) == 2
    assert "no feature encoder" in capsys.readouterr().err


def test_the_editor_service_restyles_an_object_with_its_own_noise(synth):
    """The editor's /api/style on a model with 3D noise: K draws the object's own noise K, 'random'
    a draw other than its current one, 'default' the picture's noise again; out-of-range draws are
    refused with the range."""
    from pix2pixhd_jax.inference.editing import Editor
    from pix2pixhd_jax.serve import ApiError, EditorService
    from serve_helpers import decode_data_url, png_b64

    service = EditorService(synth, {}, seed=1, resize="none")
    assert service.info["noise"] and not service.info["styles"]
    state = service.upload({"label": png_b64(LABEL.astype(np.uint8))})
    sid = state["session"]
    iid = service.select({"session": sid, "x": W - 1, "y": 0})["selected"]["instance"]
    reference = Editor(synth, service.sessions[sid].editor.scene, seed=1)
    base = decode_data_url(state["photo"])
    np.testing.assert_array_equal(base, reference.render())

    drawn = decode_data_url(service.style({"session": sid, "instance": iid, "style": 3})["photo"])
    np.testing.assert_array_equal(drawn, reference.set_style(iid, 3))
    assert np.abs(drawn.astype(int) - base).mean() > 0.1
    selected = service.select({"session": sid, "x": W - 1, "y": 0})["selected"]
    assert (selected["style"], selected["style_kind"]) == (3, "chosen")

    other = decode_data_url(service.style({"session": sid, "instance": iid, "style": "random", "seed": 7})["photo"])
    index = service.select({"session": sid, "x": W - 1, "y": 0})["selected"]["style"]
    assert isinstance(index, int) and index != 3
    np.testing.assert_array_equal(other, reference.set_style(iid, index))
    back = service.style({"session": sid, "instance": iid, "style": "default"})
    np.testing.assert_array_equal(decode_data_url(back["photo"]), base)
    for bad in (-1, 2 ** 31, "blue", 1.5):
        with pytest.raises(ApiError, match=r"0\.\.2147483647"):
            service.style({"session": sid, "instance": iid, "style": bad})
