"""The train step, the image pool and data-parallel sharding (the optimizers: test_optimizer.py).

XLA compiles slowly on small CPUs, so the models are tiny, initial states are filled from
numpy by parameter name (shapes from jax.eval_shape of init_train_state: no init program is
compiled), every distinct step is compiled once per module, and the multi-device check runs
in a subprocess started with the module's first test, in parallel with the others.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, load_test_config
from pix2pixhd_jax.config_loading import with_defaults
from pix2pixhd_jax.models.pix2pixhd import Networks, generate, model_inputs
from pix2pixhd_jax.runtime import sharding
from pix2pixhd_jax.training import image_pool, losses
from pix2pixhd_jax.training.step import TRAINED, init_train_state, make_train_step
from step_helpers import (H, LABEL_NC, TINY, W, changed_fraction, d_adam, fast_state, g_adam, leaf_name, make_batch,
                          photo)

# One xdist worker builds the tiny compiled step once for all the tests here.
pytestmark = pytest.mark.xdist_group("train_step")

STEPS_PER_EPOCH = 10


def leaves(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def scalars(metrics):
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# ---------------------------------------------------------------------------------------
# The multi-device run, in a subprocess with 4 host CPU devices

SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{tests!r}, {root!r}]
    import jax
    import numpy as np
    from conftest import load_test_config
    from pix2pixhd_jax.models.pix2pixhd import Networks
    from pix2pixhd_jax.runtime import sharding
    from pix2pixhd_jax.training.step import make_train_step
    from pix2pixhd_jax.training.step import TRAINED
    from step_helpers import SHARDED_CONFIG, d_adam, fast_state, g_adam, make_batch

    assert len(jax.devices()) == 4, jax.devices()
    HEIGHT, WIDTH, NC = 32, 32, 8

    def run(devices, shard_params):
        # Exactly as train.py jits and feeds the step.
        config = load_test_config(*SHARDED_CONFIG, f"train.shard_params={{shard_params}}")
        nets = Networks(config)
        mesh = sharding.make_mesh(devices)
        host_state = fast_state(nets, HEIGHT, WIDTH)
        state_sh = sharding.state_shardings(host_state, mesh, config.train.shard_params)
        batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
        step = jax.jit(make_train_step(config, 2), in_shardings=(state_sh, batch_sh, repl),
                       out_shardings=(state_sh, repl, batch_sh), donate_argnums=(0,))
        state = jax.device_put(host_state, state_sh)
        metrics = []
        for i in range(3):
            batch = sharding.global_batch(make_batch(4, HEIGHT, WIDTH, NC, seed=100 + i), mesh)
            state, m, fake = step(state, batch, {{}})
            metrics.append({{k: float(v) for k, v in m.items()}})
        return state, metrics, fake

    def flat(state):
        trees = {{"g_params": state.g_params, "d_params": state.d_params, "g_opt": state.g_opt,
                  "d_opt": state.d_opt}}
        return {{jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(trees)}}

    base_state, base_metrics, base_fake = run(jax.devices()[:1], False)
    base = {{k: np.asarray(v) for k, v in flat(base_state).items()}}
    moments = {{"g_params": g_adam(base_state.g_opt, TRAINED).mu, "d_params": d_adam(base_state.d_opt).mu}}
    base_grad_scale = {{jax.tree_util.keystr(p): float(np.abs(np.asarray(x)).max())
                        for p, x in jax.tree_util.tree_leaves_with_path(moments)}}
    out = {{"metrics": {{"1 device": base_metrics}}, "mismatches": {{}}, "fake_close": {{}}, "fake_shards": {{}},
            "sharded_leaves": {{}}}}
    for name, shard_params in (("4 devices", False), ("4 devices, shard_params", True)):
        state, metrics, fake = run(jax.devices(), shard_params)
        out["metrics"][name] = metrics
        bad = []
        for key, x in flat(state).items():
            got = np.asarray(x)
            if not np.allclose(got, base[key], rtol=1e-4, atol=1e-5):
                # With the size of the 1-device run's gradient of that leaf (Adam's first moment).
                bad.append([key, float(np.abs(got - base[key]).max()), base_grad_scale.get(key)])
        out["mismatches"][name] = bad
        out["fake_close"][name] = bool(np.allclose(np.asarray(fake), np.asarray(base_fake), rtol=1e-4, atol=1e-5))
        out["fake_shards"][name] = sorted([s.device.id, s.data.shape[0]] for s in fake.addressable_shards)
        sharded = []
        for key, x in flat(state).items():
            if "data" in str(x.sharding.spec):
                shard_shapes = sorted({{tuple(s.data.shape) for s in x.addressable_shards}})
                sharded.append([key, list(x.shape), [list(s) for s in shard_shapes]])
        out["sharded_leaves"][name] = sharded
    print("RESULT " + json.dumps(out))
""")

# Channels wide enough that some leaves reach sharding's size threshold (2**14 elements).


class ShardedRun:
    """The 4-device subprocess: started early, read by the sharding test."""

    def __init__(self):
        self.proc = None

    def start(self):
        if self.proc is None:
            flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
            env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4", XLA_FLAGS=flags.strip())
            script = SHARDED_SCRIPT.format(tests=str(ROOT / "tests"), root=str(ROOT))
            self.proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(ROOT),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout=600):
        self.start()
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, stdout, stderr

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def sharded_run(request):
    """Starts the 4-device subprocess with this module's first test when the sharding test
    is among the collected tests, so it compiles while the others run (not under xdist,
    where the sharding test may run in another worker: then the test starts it itself)."""
    run = ShardedRun()
    wanted = any(item.name.startswith("test_sharded") and item.module.__name__ == __name__
                 for item in request.session.items)
    if wanted and "PYTEST_XDIST_WORKER" not in os.environ:
        run.start()
    yield run
    run.stop()


# ---------------------------------------------------------------------------------------
# Shared compiled steps


@pytest.fixture(scope="module")
def tiny():
    """The tiny global-generator config, its jitted step, a fresh state and one batch."""
    config = load_test_config(*TINY)
    nets = Networks(config)
    step = jax.jit(make_train_step(config, STEPS_PER_EPOCH))
    state = fast_state(nets, H, W)
    batch = make_batch(2, H, W, LABEL_NC)
    first = step(state, batch, {})
    return types.SimpleNamespace(config=config, nets=nets, step=step, state=state, batch=batch, first=first)


# ---------------------------------------------------------------------------------------
# 1. Overfitting


def test_overfitting_one_batch_lowers_the_l1_to_the_photo(tiny):
    def l1(fake):
        return float(np.abs(np.asarray(fake) - photo(tiny.batch)).mean())

    state, metrics, fake = tiny.first  # fake = G's output before any update
    start = l1(fake)
    assert metrics["lr"] == pytest.approx(tiny.config.train.lr)
    for _ in range(50):
        state, metrics, fake = tiny.step(state, tiny.batch, {})
    end = l1(fake)  # the output of G after 50 updates
    assert int(state.step) == 51
    assert all(np.isfinite(v) for v in scalars(metrics).values())
    assert end <= 0.7 * start, f"L1 to the photo went from {start:.4f} to {end:.4f} in 50 steps"


# ---------------------------------------------------------------------------------------
# 2. G and D both updated from the pre-update parameters


def test_g_and_d_are_updated_from_the_same_pre_update_params(tiny):
    config, nets, state0, batch = tiny.config, tiny.nets, tiny.state, tiny.batch
    state1, metrics, step_fake = tiny.first
    lr, eps, b1 = config.train.lr, 1e-8, config.train.beta1
    inputs = model_inputs(batch, config, xp=np)
    label = inputs["label"]
    real_in = np.concatenate([label, inputs["image"]], axis=-1)

    @jax.jit
    def g_terms(g_params, d_params):
        """(G's loss gradient, G's output) by hand: GAN + feature matching."""
        def g_loss(p):
            fake, _ = generate(nets, p, state0.g_stats, inputs, train=True, rng=jax.random.PRNGKey(0))
            pred_fake = nets.D.apply({"params": d_params}, jnp.concatenate([label, fake], -1), train=True)
            pred_real = nets.D.apply({"params": d_params}, real_in, train=True)
            return losses.gan_loss(pred_fake, True) + losses.feature_matching_loss(
                pred_fake, pred_real, config.model.n_layers_D, config.loss.lambda_feat), fake

        return jax.grad(g_loss, has_aux=True)(g_params)

    @jax.jit
    def d_terms(d_params, fake):
        """(D's loss, its gradient, G's GAN loss against this D)."""
        def d_loss(p):
            pred_fake = nets.D.apply({"params": p}, jnp.concatenate([label, fake], -1), train=True)
            pred_real = nets.D.apply({"params": p}, real_in, train=True)
            return 0.5 * (losses.gan_loss(pred_fake, False) + losses.gan_loss(pred_real, True)), pred_fake

        (loss, pred_fake), grads = jax.value_and_grad(d_loss, has_aux=True)(d_params)
        return loss, grads, losses.gan_loss(pred_fake, True)

    def first_moment_is(mu, g, rtol):
        """After Adam's first step its first moment is (1 - beta1) * the gradient. The biases of
        convs followed by a normalization have a gradient that is zero but for round-off (a few
        1e-7 either way), hence the absolute tolerance."""
        return all(np.allclose(np.asarray(m), (1 - b1) * np.asarray(x), rtol=rtol, atol=1e-6)
                   for m, x in zip(jax.tree_util.tree_leaves(mu), jax.tree_util.tree_leaves(g), strict=True))

    g_grads_old_d, fake_old = g_terms(state0.g_params, state0.d_params)
    g_grads_new_d, _ = g_terms(state0.g_params, state1.d_params)
    _, fake_new = g_terms(state1.g_params, state0.d_params)
    assert np.allclose(np.asarray(step_fake), np.asarray(fake_old), atol=1e-5)
    assert not np.allclose(np.asarray(fake_new), np.asarray(fake_old), atol=1e-4)

    # G's update used its loss gradient with D's old params, not D's updated ones.
    assert first_moment_is(g_adam(state1.g_opt, TRAINED).mu, g_grads_old_d, rtol=1e-4)
    assert not first_moment_is(g_adam(state1.g_opt, TRAINED).mu, g_grads_new_d, rtol=1e-2)
    loss_d, d_grads_old_g, loss_g_gan = d_terms(state0.d_params, fake_old)
    assert float(metrics["loss_G_GAN"]) == pytest.approx(float(loss_g_gan), rel=1e-5)
    assert float(metrics["loss_G_GAN"]) != pytest.approx(float(d_terms(state1.d_params, fake_old)[2]), rel=1e-3)

    # D's update used its loss gradient at the old G's output, not the updated G's: first
    # moment, and the params moved by -lr * g / (|g| + eps).
    assert float(metrics["loss_D"]) == pytest.approx(float(loss_d), rel=1e-5)
    assert first_moment_is(d_adam(state1.d_opt).mu, d_grads_old_g, rtol=1e-4)
    assert not first_moment_is(d_adam(state1.d_opt).mu, d_terms(state0.d_params, fake_new)[1], rtol=1e-2)
    moved = [np.isclose(np.asarray(new), np.asarray(old) - lr * np.asarray(g) / (np.abs(g) + eps), rtol=0,
                        atol=lr * 1e-2).ravel()
             for new, old, g in zip(jax.tree_util.tree_leaves(state1.d_params),
                                    jax.tree_util.tree_leaves(state0.d_params),
                                    jax.tree_util.tree_leaves(d_grads_old_g), strict=True)]
    assert np.mean(np.concatenate(moved)) > 0.99


# ---------------------------------------------------------------------------------------
# 3. Data parallelism: 1 device == 4 devices == 4 devices with sharded params


def test_sharded_step_matches_one_device(sharded_run):
    returncode, stdout, stderr = sharded_run.result()
    assert returncode == 0, stderr[-4000:]
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    base = out["metrics"]["1 device"]
    assert len(base) == 3
    for name in ("4 devices", "4 devices, shard_params"):
        for i, (got, want) in enumerate(zip(out["metrics"][name], base, strict=True)):
            assert set(got) == set(want)
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-5), (name, i, key)
        # Every leaf agrees but the biases of convs followed by instance norm: the norm removes a
        # per-channel constant, so their gradient is exactly 0 but for rounding, which depends on
        # the reduction order, and Adam scales that noise up to +-lr steps (in the reference too;
        # harmless, the norm cancels them). Their 1-device gradients are ~1e-7, real ones >~1e-2.
        for key, diff, grad_scale in out["mismatches"][name]:
            assert key.endswith("['bias']") and grad_scale < 1e-5, (name, key, diff, grad_scale)
            assert diff <= 2 * 3 * 2e-4 * 1.01, (name, key, diff)
        assert out["fake_close"][name], name
        # The generated batch stays split over the devices, one row each.
        assert [rows for _, rows in out["fake_shards"][name]] == [1, 1, 1, 1], out["fake_shards"][name]
        assert len({device for device, _ in out["fake_shards"][name]}) == 4
    assert out["sharded_leaves"]["4 devices"] == []
    sharded = out["sharded_leaves"]["4 devices, shard_params"]
    assert sharded, "shard_params sharded no leaf"
    for key, shape, shard_shapes in sharded:
        assert math.prod(shape) >= 2 ** 14, key
        axis = sharding.split_axis(shape, 4)
        assert shard_shapes == [[d // 4 if a == axis else d for a, d in enumerate(shape)]], key
    assert any(key.startswith("['g_params']") and key.endswith("['kernel']") for key, _, _ in sharded)
    assert any(key.startswith("['g_opt']") for key, _, _ in sharded)


def test_shard_params_splits_the_axis_whose_shards_fill_tpu_tiles():
    kernel = (3, 3, 1024, 1024)  # one of the global generator's residual convs
    assert sharding.split_axis(kernel, 4) == 3  # 256 output channels a shard: tiles full, the last axis
    # Over 16 or 256 chips a shard of output channels is narrower than a tile's 128 lanes; the input
    # channels' axis is split instead, whose tiles hold 8.
    assert sharding.split_axis(kernel, 16) == sharding.split_axis(kernel, 256) == 2
    full = sharding._tiled_elements(kernel)
    assert sharding._tiled_elements((3, 3, 4, 1024)) <= full / 128  # 256 chips: a 256th, in tiles of 8
    assert sharding._tiled_elements((3, 3, 1024, 4)) == full / 8  # the last axis: only an 8th saved
    assert sharding.split_axis((7, 7, 36, 64), 7) == 1  # equal shards: the later axis
    assert sharding.split_axis((1000,), 3) is None


# ---------------------------------------------------------------------------------------
# 4. The image pool


def _pool_ids(images):
    return [int(round(float(x))) for x in np.asarray(images)[:, 0, 0, 0]]


def _run_pool(seed, size=5, batch=2, queries=150):
    """Queries with images numbered 1, 2, ... (each image filled with its number), checking
    the pool's invariants; returns (the numbers D got per query, [got an old one?] once full)."""
    query = jax.jit(image_pool.query)
    pool = image_pool.init_pool(size, (2, 2, 1))
    key = jax.random.PRNGKey(seed)
    history, old_flags = [], []
    for q in range(queries):
        key, sub = jax.random.split(key)
        ids = list(range(1 + q * batch, 1 + (q + 1) * batch))
        images = np.broadcast_to(np.asarray(ids, np.float32)[:, None, None, None], (batch, 2, 2, 1))
        count = int(pool["count"])
        before = _pool_ids(pool["images"])[:count]
        pool, out = query(pool, jnp.asarray(images), sub)
        got = _pool_ids(out)
        history.append(got)
        assert pool["images"].shape == (size, 2, 2, 1)
        assert int(pool["count"]) == min(count + batch, size)
        after = _pool_ids(pool["images"])[:int(pool["count"])]
        if count + batch <= size:  # not full: the new images come back and are stored
            assert got == ids and after == before + ids
        elif count < size:  # fills up within this batch: the first image is new and stored
            assert got[0] == ids[0] and ids[0] in after
        else:  # full: nothing is lost or duplicated; what is not new came from the pool
            assert sorted(before + ids) == sorted(after + got)
            for new, returned in zip(ids, got):
                assert returned == new or returned in before + ids
                old_flags.append(returned != new)
    return history, old_flags


def test_image_pool_fills_then_swaps_half_the_time():
    history, old_flags = _run_pool(3)
    assert len(old_flags) >= 280
    assert 0.4 < np.mean(old_flags) < 0.6
    # Deterministic for a given key, different for another.
    assert _run_pool(3)[0] == history
    assert _run_pool(4)[0] != history


# ---------------------------------------------------------------------------------------
# 5. The VGG loss in the step


def test_vgg_loss_is_added_to_g_loss(tiny):
    from pix2pixhd_jax.models import vgg19 as vgg_net
    from pix2pixhd_jax.weights import vgg19 as vgg_weights

    rng = np.random.default_rng(0)
    cin, params = 3, {}
    for i, cout in zip(vgg_net.CONV_INDICES, vgg_net.CONV_CHANNELS):
        params[f"features_{i}"] = {"conv": {
            "kernel": (rng.standard_normal((3, 3, cin, cout), np.float32) * np.float32(math.sqrt(2 / (9 * cin)))),
            "bias": rng.uniform(-0.1, 0.1, cout).astype(np.float32)}}
        cin = cout
    variables = {"params": params}
    shapes = jax.eval_shape(vgg_net.VGG19Features().init, jax.random.PRNGKey(0), jnp.zeros((1, H, W, 3)))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(variables)

    config = load_test_config(*TINY, "loss.no_vgg_loss=False")
    step = jax.jit(make_train_step(config, STEPS_PER_EPOCH, vgg_net.VGG19Features().apply))
    _, m, _ = step(tiny.state, tiny.batch, variables)
    m, plain = scalars(m), scalars(tiny.first[1])
    assert m["loss_G_VGG"] > 0
    assert m["loss_G"] == pytest.approx(m["loss_G_GAN"] + m["loss_G_GAN_Feat"] + m["loss_G_VGG"], rel=1e-5)
    # The same forward pass otherwise; the VGG term adds to G's gradient.
    assert m["loss_G_GAN"] == pytest.approx(plain["loss_G_GAN"], rel=1e-5)
    assert m["loss_G"] > plain["loss_G"]
    assert m["grad_norm_G"] != pytest.approx(plain["grad_norm_G"], rel=1e-3)
    # Without it (loss.no_vgg_loss, so no VGG module): no such term.
    assert tiny.config.loss.no_vgg_loss and vgg_weights.vgg_from_config(tiny.config.loss) is None
    assert "loss_G_VGG" not in plain
    assert plain["loss_G"] == pytest.approx(plain["loss_G_GAN"] + plain["loss_G_GAN_Feat"], rel=1e-5)


# ---------------------------------------------------------------------------------------
# 6. bfloat16 compute


def test_bfloat16_step_keeps_float32_params_and_close_losses(tiny):
    config = load_test_config(*TINY, "train.dtype=bfloat16")
    nets = Networks(config)
    shapes = jax.eval_shape(lambda r: init_train_state(nets, r, H, W), jax.random.PRNGKey(0))
    assert jax.tree_util.tree_map(lambda s: (s.shape, s.dtype), shapes) == \
        jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), tiny.state)
    state, m, fake = jax.jit(make_train_step(config, STEPS_PER_EPOCH))(tiny.state, tiny.batch, {})
    for _, x in leaves((state.g_params, state.d_params, state.g_opt, state.d_opt)):
        assert x.dtype in (jnp.float32, jnp.int32), x.dtype
    assert fake.dtype == jnp.float32
    m, ref = scalars(m), scalars(tiny.first[1])
    assert set(m) == set(ref)
    for key, value in m.items():
        assert np.isfinite(value), key
        # Losses agree to ~0.1% on this model; gradient norms to a few %.
        assert value == pytest.approx(ref[key], rel=0.02 if key.startswith("loss") else 0.2, abs=1e-3), key
    # bfloat16 did compute something else than float32.
    assert any(m[k] != ref[k] for k in ("loss_G", "loss_D", "grad_norm_G"))
    assert changed_fraction(state.g_params, tiny.state.g_params) > 0.9


# ---------------------------------------------------------------------------------------
# 7. The pix2pix baseline path: U-Net, PatchGAN, batch norm, dropout, BCE + L1


def test_pix2pix_path_with_batch_norm_and_dropout():
    config = load_test_config(
        "model.netG=unet_128", "model.netD=patch", "model.norm=batch", "model.use_dropout=True",
        "model.ngf=4", "model.ndf=4", "model.n_layers_D=1", "model.num_D=1", "loss.no_lsgan=True",
        "loss.no_ganFeat_loss=True", "loss.no_vgg_loss=True", "loss.lambda_l1=100", "data.use_instance=False",
        f"data.label_nc={LABEL_NC}", "train.batch_size=2")
    nets = Networks(config)
    size = 128
    state0 = fast_state(nets, size, size)
    assert jax.tree_util.tree_leaves(state0.g_stats) and jax.tree_util.tree_leaves(state0.d_stats)
    batch = make_batch(2, size, size, LABEL_NC, use_instance=False)
    step = jax.jit(make_train_step(config, STEPS_PER_EPOCH))
    state1, m, fake = step(state0, batch, {})
    m = scalars(m)
    assert np.all(np.isfinite(list(m.values())))
    assert "loss_G_L1" in m and "loss_G_GAN_Feat" not in m
    assert m["loss_G_L1"] == pytest.approx(100 * float(np.abs(np.asarray(fake) - photo(batch)).mean()), rel=1e-4)
    assert m["loss_G"] == pytest.approx(m["loss_G_GAN"] + m["loss_G_L1"], rel=1e-5)
    assert changed_fraction(state1.g_stats, state0.g_stats) > 0.9  # running statistics move
    assert changed_fraction(state1.d_stats, state0.d_stats) > 0.9
    assert changed_fraction(state1.g_params, state0.g_params) > 0.9
    # Dropout is on in training: another dropout key, another output from the same params.
    assert not np.array_equal(np.asarray(state1.rng), np.asarray(state0.rng))
    other = step(state0.replace(rng=np.asarray(jax.random.PRNGKey(99))), batch, {})[2]
    assert not np.allclose(np.asarray(other), np.asarray(fake), atol=1e-4)


# ---------------------------------------------------------------------------------------
# The feature encoder in training (paper sec. 3.4)


def test_training_with_the_encoder_feeds_pooled_features_to_g_only_and_trains_e():
    config = load_test_config(*TINY, "model.instance_feat=True", "model.nef=4", "model.n_downsample_E=1")
    nets = Networks(config)
    state = fast_state(nets, H, W)
    batch = make_batch(2, H, W, LABEL_NC)
    feat_num, label_nc_in = config.model.feat_num, LABEL_NC + 1
    # G's first conv sees labels + boundary + E's features; D's sees labels + boundary + image only.
    g_in = {leaf.shape[2] for path, leaf in leaves(state.g_params["generator"]) if leaf_name(path) == "kernel"}
    d_in = {leaf.shape[2] for path, leaf in leaves(state.d_params) if leaf_name(path) == "kernel"}
    assert label_nc_in + feat_num in g_in and label_nc_in not in g_in
    assert label_nc_in + 3 in d_in and label_nc_in + 3 + feat_num not in d_in

    # What G receives: E's output averaged over each instance.
    feats = np.asarray(nets.E.apply({"params": state.g_params["encoder"]}, photo(batch), batch["inst"].astype(np.int32),
                                    train=False))
    for b in range(2):
        for inst_id in np.unique(batch["inst"][b]):
            values = feats[b][batch["inst"][b] == inst_id]
            np.testing.assert_allclose(values, np.broadcast_to(values[0], values.shape), atol=1e-6)

    step = jax.jit(make_train_step(config, STEPS_PER_EPOCH))
    new_state, metrics, _ = step(state, batch, {})
    assert np.isfinite(float(metrics["loss_G"]))
    # E has no loss of its own: it learns through G's loss, with G's optimizer.
    assert changed_fraction(state.g_params["encoder"], new_state.g_params["encoder"]) > 0.5
    # Another photo with the same labels changes G's output only through E.
    other = dict(batch, image=255 - batch["image"])
    out_a, _ = generate(nets, new_state.g_params, new_state.g_stats, model_inputs(batch, config), train=False,
                        rng=jax.random.PRNGKey(0))
    out_b, _ = generate(nets, new_state.g_params, new_state.g_stats, model_inputs(other, config), train=False,
                        rng=jax.random.PRNGKey(0))
    assert float(jnp.abs(out_a - out_b).mean()) > 1e-4


def test_encoder_norm_follows_model_norm_unless_norm_e_is_set():
    from pix2pixhd_jax import models

    enc = ("model.instance_feat=True", "model.nef=4", "model.n_downsample_E=1")
    assert models.build_encoder(load_test_config(*TINY, *enc)).norm == "instance"
    assert models.build_encoder(load_test_config(*TINY, *enc, "model.norm=batch")).norm == "batch"
    config = load_test_config(*TINY, *enc, "model.norm_E=batch")
    assert models.build_encoder(config).norm == "batch"
    assert models.build_generator(config).norm == "instance"  # G (and D) keep model.norm
    # A workdir's config.json from before norm_E (no such key) still builds E with model.norm.
    old = json.loads(json.dumps(load_test_config(*TINY, *enc, "model.norm=batch")))
    del old["model"]["norm_E"]
    assert models.build_encoder(with_defaults(old)).norm == "batch"

    # Batch-normed E: its running statistics sit with G's stats and the train step updates them;
    # G's instance norms have none.
    nets = Networks(config)
    state = fast_state(nets, H, W)
    assert leaves(state.g_stats["encoder"]) and not leaves(state.g_stats.get("generator", {}))
    batch = make_batch(2, H, W, LABEL_NC)
    new_state, metrics, _ = jax.jit(make_train_step(config, STEPS_PER_EPOCH))(state, batch, {})
    assert np.isfinite(float(metrics["loss_G"]))
    assert changed_fraction(new_state.g_stats["encoder"], state.g_stats["encoder"]) > 0.9
    assert changed_fraction(state.g_params["encoder"], new_state.g_params["encoder"]) > 0.5


def test_graft_copies_matching_arrays_and_names_the_others(caplog):
    from pix2pixhd_jax.training.train import graft

    params = {"a": {"kernel": jnp.zeros((3, 3, 4, 8))}, "b": {"bias": jnp.zeros((8,))}, "c": jnp.zeros((2,))}
    source = {"a": {"kernel": np.ones((3, 3, 4, 16))}, "b": {"bias": np.ones((8,))}}
    with caplog.at_level("WARNING"):
        out = graft(params, source)
    assert float(out["b"]["bias"].sum()) == 8.0  # copied
    assert float(out["a"]["kernel"].sum()) == 0.0 and float(out["c"].sum()) == 0.0  # kept fresh
    assert "/a/kernel (3, 3, 4, 16) -> (3, 3, 4, 8)" in caplog.text and "1 arrays" in caplog.text
