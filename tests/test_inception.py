"""The Flax FID Inception against a PyTorch one built from plain torch.nn layers in
pytorch-fid's structure (tests/torch_fid_inception.py), random weights, loaded through the
project's state-dict reader; the loaders' formats and errors; the preprocessing."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pix2pixhd_jax.models import inception
from pix2pixhd_jax.weights import inception as weights
from pix2pixhd_jax.weights.files import flatten

ROOT = Path(__file__).resolve().parents[1]


def _torch():
    return pytest.importorskip("torch", reason="torch builds the reference network (pip install torch)")


def _random_state_dict(seed=0):
    """numpy arrays under every key pool3 needs, in the torch layout, plus an fc like the real file's."""
    rng = np.random.default_rng(seed)
    state = {k: rng.normal(size=shape).astype(np.float32) for k, (_, shape) in weights.state_dict_slots().items()}
    state["fc.weight"], state["fc.bias"] = np.zeros((1008, 2048), np.float32), np.zeros(1008, np.float32)
    return state


def _assert_same_variables(a, b):
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])


# ----- against PyTorch (needs torch) ----------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(torch model in eval mode, path of its saved state dict)."""
    torch = _torch()
    from torch_fid_inception import TorchFIDInception

    torch.manual_seed(0)
    model = TorchFIDInception()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
        # One train-mode pass sets every running mean/var to this batch's statistics
        # (momentum 1), so activations stay O(1) through all 94 layers in eval mode.
        model.train()
        model(torch.rand(3, 3, 139, 139) * 2 - 1)
    model.eval()
    path = tmp_path_factory.mktemp("inception") / weights.FID_WEIGHTS_FILE
    torch.save(model.state_dict(), path)
    return model, path


def test_pool3_features_match_pytorch(reference):
    # 139x139 without resizing keeps it cheap; Mixed_7c then works on 3x3 maps, so its
    # pools see both padded borders and a full interior window.
    torch = _torch()
    model, path = reference
    module, variables = weights.load_fid_inception(path, resize_input=False)
    images = np.random.default_rng(1).random((2, 139, 139, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(images.transpose(0, 3, 1, 2)) * 2 - 1).numpy()
    got = inception.feature_fn(module, variables)(images)
    assert got.shape == (2, inception.POOL3_DIM)
    scale = np.abs(want).max()
    assert scale > 1e-2  # the features carry signal
    np.testing.assert_allclose(got, want, atol=1e-4 * scale, rtol=1e-4)


def test_pth_and_its_npz_conversion_give_the_same_variables(reference, tmp_path):
    model, path = reference
    from_pth = weights.load_inception_variables(path)
    npz = weights.convert_fid_inception(path, tmp_path / "fid_inception.npz")
    _assert_same_variables(weights.load_inception_variables(npz), from_pth)
    # The released file was saved by an old PyTorch, without num_batches_tracked.
    state = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    _assert_same_variables(weights.variables_from_state_dict(state), from_pth)


def test_convert_command(tmp_path, reference):
    _, good = reference
    out = tmp_path / "fid_inception.npz"
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", "convert-inception", "--pth", str(good), "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "converted" in done.stdout and out.is_file()
    cmd[5] = str(tmp_path / "absent.pth")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "absent.pth does not exist" in done.stderr


def test_wrong_pth_names_the_file_and_the_fix(tmp_path):
    torch = _torch()
    wrong = tmp_path / "vgg19.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    missing = r"key .Conv2d_1a_3x3\.\S+. is missing \(470 of the 470"
    with pytest.raises(weights.InceptionWeightsError, match=missing) as e:
        weights.load_inception_variables(wrong)
    assert str(wrong) in str(e.value) and weights.FID_WEIGHTS_FILE in str(e.value)
    garbage = tmp_path / "broken.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(weights.InceptionWeightsError, match="broken.pth: cannot read"):
        weights.load_inception_variables(garbage)


@pytest.mark.parametrize("size", [(40, 50), (333, 410), (299, 320), (299, 299)])
def test_resize_matches_torch_interpolate(size):
    torch = _torch()
    x = np.random.default_rng(2).random((2, *size, 3)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(299, 299),
                                           mode="bilinear", align_corners=False).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(inception.resize_bilinear_torch(x, (299, 299)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    pre = np.asarray(inception.fid_preprocess(x))
    np.testing.assert_allclose(pre, 2 * want - 1, atol=2e-6)


# ----- torch-free ------------------------------------------------------------------------------


def test_npz_and_pickles_load_without_torch(tmp_path):
    state = _random_state_dict()
    want = weights.variables_from_state_dict(state)
    npz = tmp_path / "fid_inception.npz"
    np.savez(npz, **state)
    _assert_same_variables(weights.load_inception_variables(npz), want)
    # jax-fid's layout: {module: {branch: {'conv': {'kernel', 'bias'}, 'bn': {...}}}}, one tree
    tree = {}
    for collection in ("params", "batch_stats"):
        for k, v in flatten(want[collection]).items():
            node = tree
            for part in k[:-1]:
                node = node.setdefault(part, {})
            node[k[-1]] = v
            if k[-1] == "kernel":  # jax-fid keeps an unused conv bias
                node["bias"] = np.zeros(v.shape[-1], np.float32)
    pkl = tmp_path / "inception_v3_weights_fid.pickle"
    pkl.write_bytes(pickle.dumps(tree))
    _assert_same_variables(weights.load_inception_variables(pkl), want)
    flax_pkl = tmp_path / "variables.pkl"
    flax_pkl.write_bytes(pickle.dumps(want))
    _assert_same_variables(weights.load_inception_variables(flax_pkl), want)
    del tree["Mixed_6b"]["branch1x1"]["bn"]["var"]
    pkl.write_bytes(pickle.dumps(tree))
    with pytest.raises(weights.InceptionWeightsError, match="Mixed_6b/branch1x1/bn/var is missing"):
        weights.load_inception_variables(pkl)


def test_mismatched_state_dicts_are_refused():
    state = _random_state_dict()
    state["Mixed_6b.branch1x1.conv.weight"] = np.zeros((192, 768, 3, 3), np.float32)
    with pytest.raises(weights.InceptionWeightsError, match=r"Mixed_6b.branch1x1.conv.weight has shape"):
        weights.variables_from_state_dict(state, "x.pth")
    state = _random_state_dict()
    state["Mixed_8a.conv.weight"] = np.zeros(1)
    with pytest.raises(weights.InceptionWeightsError, match="x.pth: unexpected key 'Mixed_8a"):
        weights.variables_from_state_dict(state, "x.pth")


def test_missing_file_names_it_and_the_fix(tmp_path):
    path = tmp_path / weights.FID_WEIGHTS_FILE
    with pytest.raises(weights.InceptionWeightsNotFoundError) as e:
        weights.load_fid_inception(path)
    assert str(path) in str(e.value) and weights.FID_WEIGHTS_URL in str(e.value)
    assert "does not exist" in str(e.value)
    message = weights.missing_weights_message()
    assert "skipped" in message and weights.FID_WEIGHTS_FILE in message
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"")
    with pytest.raises(weights.InceptionWeightsError, match="unknown format '.bin'"):
        weights.load_inception_variables(odd)


def test_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
    pth = tmp_path / weights.FID_WEIGHTS_FILE
    pth.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(weights.InceptionWeightsError, match="needs torch.*convert-inception --pth"):
        weights.load_inception_variables(pth)


def test_pickles_cannot_run_code(tmp_path):
    evil = tmp_path / "evil.pickle"

    class Evil:
        def __reduce__(self):
            return (print, ("this must not run",))

    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(weights.InceptionWeightsError, match="refusing to load builtins.print"):
        weights.load_inception_variables(evil)


def test_uint8_input_and_the_resize_path_shape():
    import jax

    u = np.random.default_rng(3).integers(0, 256, (1, 20, 30, 3)).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(inception.fid_preprocess(u, resize=False)), u / 127.5 - 1, atol=1e-6)
    variables = inception.expected_variables()
    out = jax.eval_shape(inception.FIDInceptionV3().apply, variables, jax.ShapeDtypeStruct((3, 20, 30, 3), np.uint8))
    assert out.shape == (3, inception.POOL3_DIM)
    with pytest.raises(ValueError, match="75x75"):
        jax.eval_shape(inception.FIDInceptionV3(resize_input=False).apply, variables,
                       jax.ShapeDtypeStruct((1, 60, 80, 3), np.float32))


def test_resize_of_a_linear_ramp_by_hand():
    # Upsampling 2 -> 4 with align_corners=False: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25
    # (its right neighbour clamped to 1): [0, 0.25, 0.75, 1] for a row [0, 1].
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    got = np.asarray(inception.resize_bilinear_torch(x, (1, 4))).ravel()
    np.testing.assert_allclose(got, [0, 0.25, 0.75, 1])
