"""VGG19 feature extractor, its weight loaders and the VGG loss.

The reference network is a torch.nn.Sequential built here with torchvision's vgg19().features
layout (torchvision itself is not installed); all weights are random and written by the tests.
"""

import math
import subprocess
import sys
import textwrap
import types

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT
from pix2pixhd_jax.models import vgg19 as vgg_net
from pix2pixhd_jax.models.layers import count_params
from pix2pixhd_jax.training import losses
from pix2pixhd_jax.weights import vgg19 as vgg_weights

# torchvision's cfg "E" (vgg19): conv output channels, "M" = max-pool.
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"]
TAP_SLICES = [(0, 2), (2, 7), (7, 12), (12, 21), (21, 30)]
KERAS_ALL_CONVS = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for c in range(1, n + 1)]
KERAS_ALL_LAYERS = ["input_1"] + [
    name for b, n in zip(range(1, 6), (2, 2, 4, 4, 4))
    for name in [f"block{b}_conv{c}" for c in range(1, n + 1)] + [f"block{b}_pool"]
]


def conv_layout():
    """[(torchvision index, cin, cout)] of every conv in features, from the cfg."""
    out, index, cin = [], 0, 3
    for v in VGG19_CFG:
        if v == "M":
            index += 1
        else:
            out.append((index, cin, v))
            index, cin = index + 2, v
    assert index == 37  # len(torchvision vgg19().features)
    return out


def random_state_dict(seed=0):
    """torchvision-layout numpy state dict for all 16 convs of features, He-scaled so taps stay O(1)."""
    rng = np.random.default_rng(seed)
    state = {}
    for i, cin, cout in conv_layout():
        state[f"features.{i}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2.0 / (9 * cin))).astype(np.float32)
        state[f"features.{i}.bias"] = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    return state


def torch_features(state):
    torch = pytest.importorskip("torch")
    layers, cin = [], 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [torch.nn.Conv2d(cin, v, kernel_size=3, padding=1), torch.nn.ReLU(inplace=True)]
            cin = v
    seq = torch.nn.Sequential(*layers)
    for i in vgg_net.CONV_INDICES:
        assert isinstance(seq[i], torch.nn.Conv2d)
    for i in vgg_net.POOL_INDICES:
        assert isinstance(seq[i], torch.nn.MaxPool2d)
    seq.load_state_dict({k[len("features."):]: torch.from_numpy(v) for k, v in state.items()})
    return seq.eval()


def torch_taps(seq, x_nhwc):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    out = []
    with torch.no_grad():
        for a, b in TAP_SLICES:
            t = seq[a:b](t)
            out.append(t.numpy().transpose(0, 2, 3, 1))
    return out


def assert_taps_close(got, want, rtol=1e-4):
    assert len(got) == len(want) == 5
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.shape == w.shape, (k, g.shape, w.shape)
        scale = np.abs(w).max()
        assert scale > 1e-3, f"tap {k} is degenerate, the test would prove nothing"
        err = np.abs(g - w).max()
        assert err <= rtol * scale, f"tap {vgg_net.TAP_NAMES[k]}: max error {err} vs scale {scale}"


def image(shape=(2, 48, 64, 3), seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.fixture(scope="module")
def state():
    return random_state_dict()


@pytest.fixture(scope="module")
def pth_file(state, tmp_path_factory):
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("vgg") / "vgg19-test.pth"
    sd = {k: torch.from_numpy(v) for k, v in state.items()}
    sd["classifier.0.weight"] = torch.zeros(4, 7)  # not VGG19's shape: must be ignored
    torch.save(sd, path)
    return path


def write_keras_h5(path, kernels, nested=False):
    """Keras' VGG19 notop layout; kernels: {layer name: (HWIO kernel, bias)} for all 16 convs.

    Flat (Keras 2.x, as in the released file): /block1_conv1/block1_conv1_W_1:0 and _b_1:0.
    Nested (full-model save): /model_weights/block1_conv1/block1_conv1/kernel:0 and bias:0.
    """
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if nested else f
        root.attrs["layer_names"] = np.array([n.encode() for n in KERAS_ALL_LAYERS])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name in KERAS_ALL_LAYERS:
            g = root.create_group(name)
            if name not in kernels:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            w, b = kernels[name]
            names = [f"{name}/kernel:0", f"{name}/bias:0"] if nested else [f"{name}_W_1:0", f"{name}_b_1:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            g.create_dataset(names[0], data=w)
            g.create_dataset(names[1], data=b)


@pytest.fixture(scope="module")
def keras_kernels():
    rng = np.random.default_rng(5)
    out = {}
    for name, (_, cin, cout) in zip(KERAS_ALL_CONVS, conv_layout()):
        if name in vgg_weights.KERAS_LAYER_NAMES:
            # caffe-preprocessed inputs are O(100): scale the first layer down to keep taps O(1..100).
            std = math.sqrt(2.0 / (9 * cin)) / (100.0 if cin == 3 else 1.0)
            w = (rng.standard_normal((3, 3, cin, cout)) * std).astype(np.float32)
        else:  # block5_conv2..4 are in the file but unused
            w = np.zeros((3, 3, cin, cout), np.float32)
        out[name] = (w, rng.uniform(-0.1, 0.1, cout).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def h5_file(keras_kernels, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_h5(path, keras_kernels)
    return path


def tree_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ---------------------------------------------------------------------------------------
# Network and loaders


def test_pth_taps_match_torch(state, pth_file):
    variables, preprocess = vgg_weights.load_vgg19_weights(str(pth_file))
    assert preprocess == "none"
    assert sorted(variables["params"]) == sorted(f"features_{i}" for i in vgg_net.CONV_INDICES)
    k0 = variables["params"]["features_0"]["conv"]["kernel"]
    np.testing.assert_array_equal(np.asarray(k0), state["features.0.weight"].transpose(2, 3, 1, 0))
    x = image()
    got = vgg_net.VGG19Features(preprocess=preprocess).apply(variables, jnp.asarray(x))
    assert_taps_close(got, torch_taps(torch_features(state), x))


def test_convert_to_npz_gives_identical_variables(state, pth_file, tmp_path):
    ref, _ = vgg_weights.load_vgg19_weights(pth_file)
    out = tmp_path / "vgg19.npz"
    message = vgg_weights.convert_vgg19_main(str(pth_file), str(out))
    assert "\n" not in message and str(out) in message and "vgg_weights" in message
    with np.load(out) as data:
        assert sorted(data.files) == sorted(state)  # features.* only: classifier.* dropped
        np.testing.assert_array_equal(data["features.28.weight"], state["features.28.weight"])
    variables, preprocess = vgg_weights.load_vgg19_weights(str(out))
    assert preprocess == "none"
    tree_equal(variables, ref)


def test_safetensors_gives_identical_variables(state, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    st = tmp_path / "vgg19.safetensors"
    safetensors_numpy.save_file(dict(state), str(st))
    variables, preprocess = vgg_weights.load_vgg19_weights(str(st))
    assert preprocess == "none"
    tree_equal(variables, vgg_weights.variables_from_state_dict(state))


@pytest.mark.parametrize("nested", [False, True])
def test_keras_h5_taps_match_caffe_reference(keras_kernels, h5_file, tmp_path, nested):
    path = h5_file
    if nested:
        path = tmp_path / "nested.h5"
        write_keras_h5(path, keras_kernels, nested=True)
    variables, preprocess = vgg_weights.load_vgg19_weights(str(path))
    assert preprocess == "caffe"
    for name, i in zip(vgg_weights.KERAS_LAYER_NAMES, vgg_net.CONV_INDICES):
        np.testing.assert_array_equal(np.asarray(variables["params"][f"features_{i}"]["conv"]["kernel"]),
                                      keras_kernels[name][0])
    if nested:
        return  # same tensors as the flat file, whose taps are checked below
    x = image(seed=3)
    got = vgg_net.VGG19Features(preprocess=preprocess).apply(variables, jnp.asarray(x))
    # Reference: Keras' caffe preprocessing by hand, then the torch network with the same kernels.
    caffe = (x + 1.0) * 127.5
    caffe = caffe[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    state = {}
    for name, (i, _, _) in zip(KERAS_ALL_CONVS, conv_layout()):
        w, b = keras_kernels[name]
        state[f"features.{i}.weight"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
        state[f"features.{i}.bias"] = b
    assert_taps_close(got, torch_taps(torch_features(state), caffe.astype(np.float32)))


def test_param_count_matches_torchvision_features():
    layout = conv_layout()
    # All 16 convs of torchvision's vgg19().features: 20,024,384 parameters.
    assert sum(9 * cin * cout + cout for _, cin, cout in layout) == 20_024_384
    expected = sum(9 * cin * cout + cout for i, cin, cout in layout if i < 30)  # features[0:30]: 13 convs
    shapes = jax.eval_shape(vgg_net.VGG19Features().init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    assert count_params(shapes) == expected
    for i, cin, cout in layout:
        if i < 30:
            assert shapes["params"][f"features_{i}"]["conv"]["kernel"].shape == (3, 3, cin, cout)
            assert shapes["params"][f"features_{i}"]["conv"]["kernel"].dtype == jnp.float32


def test_bfloat16_compute_keeps_f32_params():
    model = vgg_net.VGG19Features(dtype=jnp.bfloat16)
    x = jnp.zeros((1, 16, 16, 3))
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    assert {p.dtype for p in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    taps = jax.eval_shape(model.apply, variables, x)
    assert [t.dtype for t in taps] == [jnp.bfloat16] * 5
    assert [t.shape for t in taps] == [(1, 16, 16, 64), (1, 8, 8, 128), (1, 4, 4, 256), (1, 2, 2, 512),
                                       (1, 1, 1, 512)]
    with pytest.raises(ValueError, match="preprocess"):
        jax.eval_shape(vgg_net.VGG19Features(preprocess="imagenet").init, jax.random.PRNGKey(0), x)


# ---------------------------------------------------------------------------------------
# Loss


def test_vgg_loss_weighted_sum_with_stub():
    calls = []

    def stub(variables, x):
        calls.append(x.shape[0])
        return [x * (k + 1) for k in range(5)]

    fake = jnp.full((2, 4, 4, 3), 0.5)
    real = jnp.zeros((2, 4, 4, 3))
    # sum_k w_k * (k+1) * 0.5 = 0.5 * (1/32 + 2/16 + 3/8 + 4/4 + 5) = 3.265625
    for batched, want_calls in ((True, [4]), (False, [2, 2])):
        calls.clear()
        assert float(losses.vgg_loss(stub, {}, fake, real, batched=batched)) == pytest.approx(3.265625, rel=1e-6)
        assert calls == want_calls
    rng = np.random.default_rng(0)
    f, r = rng.standard_normal((2, 3, 5, 3)), rng.standard_normal((2, 3, 5, 3))
    weights = (0.1, 0.2, 0.3, 0.4, 0.5)
    want = sum(w * np.abs((k + 1) * (f - r)).mean() for k, w in enumerate(weights))
    for batched in (True, False):
        got = losses.vgg_loss(stub, {}, jnp.asarray(f, jnp.float32), jnp.asarray(r, jnp.float32), weights, batched)
        assert float(got) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="3 weights for 5"):
        losses.vgg_loss(stub, {}, fake, real, weights=(1, 1, 1))


def test_vgg_loss_stop_gradient_both_modes():
    def stub(variables, x):  # differentiable, cheap stand-in for the VGG
        return [jnp.tanh(x * (k + 1)) for k in range(5)]

    x = jnp.asarray(image((2, 4, 4, 3), seed=4))
    y = jnp.asarray(image((2, 4, 4, 3), seed=5))
    for batched in (True, False):
        loss_fn = lambda f, r: losses.vgg_loss(stub, {}, f, r, batched=batched)  # noqa: E731
        g_fake, g_real = jax.grad(loss_fn, argnums=(0, 1))(x, y)
        assert np.all(np.asarray(g_real) == 0)
        assert float(jnp.abs(g_fake).min()) > 0


def test_vgg_loss_on_vgg19_zero_for_identical_and_gradients(state):
    model = vgg_net.VGG19Features()
    variables = vgg_weights.variables_from_state_dict(state)
    x = jnp.asarray(image((1, 16, 16, 3), seed=4))
    y = jnp.asarray(image((1, 16, 16, 3), seed=5))
    loss_fn = lambda f, r, v: losses.vgg_loss(model.apply, v, f, r)  # noqa: E731  (batched, the default)
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2)))
    same, _ = value_and_grad(x, x, variables)
    assert float(same) < 1e-6
    value, (g_fake, g_real, g_vgg) = value_and_grad(x, y, variables)
    assert float(value) > 0
    assert np.all(np.asarray(g_real) == 0)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree_util.tree_leaves(g_vgg))  # VGG stays frozen
    assert np.all(np.isfinite(np.asarray(g_fake))) and float(jnp.abs(g_fake).max()) > 0
    # Two separate VGG passes (batched=False) give the same value: checked with the stub above.


# ---------------------------------------------------------------------------------------
# Errors


def test_wrong_shape_names_key_and_shapes(state, tmp_path):
    bad = dict(state)
    bad["features.5.weight"] = np.zeros((128, 64, 1, 1), np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **bad)
    with pytest.raises(vgg_weights.VGGWeightsError) as e:
        vgg_weights.load_vgg19_weights(str(path))
    msg = str(e.value)
    assert str(path) in msg and "features.5.weight" in msg
    assert "(128, 64, 1, 1)" in msg and "(128, 64, 3, 3)" in msg and "vgg19-dcbb9e9d.pth" in msg

    missing = {k: v for k, v in state.items() if not k.startswith("features.10.")}
    path = tmp_path / "missing.npz"
    np.savez(path, **missing)
    with pytest.raises(vgg_weights.VGGWeightsError, match=r"features\.10\.weight.*missing"):
        vgg_weights.load_vgg19_weights(str(path))


def test_wrong_shape_in_keras_h5(keras_kernels, tmp_path):
    kernels = dict(keras_kernels)
    w, b = kernels["block2_conv1"]
    kernels["block2_conv1"] = (np.ascontiguousarray(w.transpose(3, 2, 0, 1)), b)  # Theano/OIHW ordering
    path = tmp_path / "th.h5"
    write_keras_h5(path, kernels)
    with pytest.raises(vgg_weights.VGGWeightsError) as e:
        vgg_weights.load_vgg19_weights(str(path))
    msg = str(e.value)
    assert str(path) in msg and "block2_conv1_W_1:0" in msg
    assert "(128, 64, 3, 3)" in msg and "(3, 3, 64, 128)" in msg

    kernels = dict(keras_kernels)
    del kernels["block4_conv3"]  # its group is there, empty
    path = tmp_path / "incomplete.h5"
    write_keras_h5(path, kernels)
    with pytest.raises(vgg_weights.VGGWeightsError, match="incomplete.h5.*block4_conv3"):
        vgg_weights.load_vgg19_weights(str(path))


def test_unknown_extension_and_missing_file(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(vgg_weights.VGGWeightsError, match=r"weights\.bin.*'\.bin'.*\.pth.*\.npz.*\.h5"):
        vgg_weights.load_vgg19_weights(str(path))
    missing = tmp_path / "nowhere" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(FileNotFoundError) as e:
        vgg_weights.load_vgg19_weights(str(missing))
    assert isinstance(e.value, vgg_weights.VGGWeightsError)
    assert str(missing) in str(e.value) and "--config.loss.vgg_weights" in str(e.value)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(vgg_weights.VGGWeightsError, match="garbage.npz"):
        vgg_weights.load_vgg19_weights(str(garbage))


def test_optional_packages_missing_give_clear_errors(tmp_path, monkeypatch):
    pth = tmp_path / "vgg19-dcbb9e9d.pth"
    pth.write_bytes(b"\0" * 16)
    st = tmp_path / "vgg19.safetensors"
    st.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(vgg_weights.VGGWeightsError) as e:
        vgg_weights.load_vgg19_weights(str(pth))
    assert "pip install torch" in str(e.value) and "convert-vgg19" in str(e.value) and str(pth) in str(e.value)
    with pytest.raises(vgg_weights.VGGWeightsError) as e:
        vgg_weights.load_vgg19_weights(str(st))
    assert "pip install safetensors" in str(e.value) and ".npz" in str(e.value)


def test_missing_weights_error_and_config():
    err = vgg_weights.missing_weights_error()
    assert isinstance(err, ValueError)
    msg = str(err)
    for needle in ("--config.loss.vgg_weights", "no_vgg_loss", "vgg19-dcbb9e9d.pth", "notop", "downloaded"):
        assert needle in msg
    assert vgg_weights.vgg_from_config(types.SimpleNamespace(no_vgg_loss=True, vgg_weights="")) is None
    with pytest.raises(vgg_weights.VGGWeightsError, match="vgg_weights"):
        vgg_weights.vgg_from_config(types.SimpleNamespace(no_vgg_loss=False, vgg_weights=""))


def test_imports_and_loads_npz_without_tensorflow_or_torch(state, tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, **state)  # a plain numpy dump of the state dict is the converted format
    code = textwrap.dedent(f"""
        import sys
        for name in ('tensorflow', 'torch', 'safetensors'):
            sys.modules[name] = None
        import pix2pixhd_jax.weights.vgg19 as vgg_weights
        assert 'h5py' not in sys.modules, 'h5py should be imported lazily'
        variables, preprocess = vgg_weights.load_vgg19_weights({str(path)!r})
        print(preprocess, float(variables['params']['features_28']['conv']['bias'].sum()))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    mode, total = res.stdout.split()
    assert mode == "none"
    assert abs(float(total) - float(state["features.28.bias"].sum())) < 1e-4
