"""The optimizers: the lr schedule, the local stage's G1 (and inner enhancers) held for
niter_fix_global epochs then trained with a fresh Adam, the optax optimizer held against the
two-part Adam it replaced, and checkpoints of that layout resuming in today's.

tests/two_adam_state.py keeps the earlier train state and update rule as they were. The step
runs with either rule (the same step body: only apply_gradients differs) on the same batches
through the freeze boundary and the lr decay; losses, lr, the freeze flag and every parameter
must agree. A two-part checkpoint converts to exactly the optax state of the same step, and
the loop resumes from one.
"""

import types

import jax
import ml_collections
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError
from pix2pixhd_jax.models.generator import G1
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.runtime import loop, sharding
from pix2pixhd_jax.training import old_checkpoints, schedule, step as train_step
from pix2pixhd_jax.training.step import FIXED, TRAINED, init_train_state, make_train_step, stage_labels
from step_helpers import (H, LABEL_NC, TINY, W, changed_fraction, fast_state, flat, g_adam, make_batch,
                          normalised_away, trees_equal)
import two_adam_state

# One xdist worker builds the trained runs once for all the tests here.
pytestmark = pytest.mark.xdist_group("optimizer")


def g1_and_rest(g_params):
    """(G1's params, everything else) of a local generator(+encoder) tree."""
    gen = g_params["generator"]
    return gen[G1], dict(g_params, generator={k: v for k, v in gen.items() if k != G1})


def scalars(metrics):
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


LOCAL = ("model.netG=local", "model.n_local_enhancers=1", "model.n_blocks_local=1", "train.niter_fix_global=1",
         "train.niter=1", "train.niter_decay=2")
SPE, STEPS, SAVED_AT = 2, 8, 3  # epochs 0 (G1 frozen), 1, 2 (lr halved), 3 (lr 0); saved after G1's first update


def batches(start=0):
    return (make_batch(2, H, W, LABEL_NC, seed=i) for i in range(start, STEPS))


def assert_alike(got, want, msg):
    """Equal to a ten-thousandth of the leaf's largest magnitude. The two rules are two programs
    that round differently, and Adam divides by the gradient's size: an element whose gradient is
    near zero moves a few float steps apart (measured: 3e-5 of its leaf's largest weight after
    three steps, 1e-6 for the moments), far above the float precision of the element itself."""
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()) + 1e-12, err_msg=msg)


def compared(key, away):
    """Whether a whole state's flat key is compared: not one of `away`'s biases, in the params
    or in their optimizer's moments."""
    return not any(key.startswith((f".{part}", f".{part[0]}_opt")) and key.endswith(path) for part, path in away)


def save(workdir, step, state):
    with checkpoint.train_manager(str(workdir), 2) as mngr:
        checkpoint.save_state(mngr, step, state)
        mngr.wait_until_finished()


@pytest.fixture(scope="module")
def runs():
    """The local stage (one enhancer) trained with each rule from the same state:
    (config, [(metrics, state)] with optax from step 0 on, the same with the two-part Adam, the
    (part, path) of the biases a normalisation cancels: the two programs round their float-noise
    gradients differently, so the comparisons leave them out)."""
    config = load_test_config(*TINY, *LOCAL)
    nets = Networks(config)
    state = fast_state(nets, H, W)
    away = normalised_away(nets, state, next(batches()))
    optax_step = jax.jit(make_train_step(config, SPE))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_step, "apply_gradients", two_adam_state.apply_gradients)
        two_adam_step = jax.jit(make_train_step(config, SPE))
        old = [(None, two_adam_state.from_state(state, config.train))]
        for batch in batches():
            new_state, metrics, _ = two_adam_step(old[-1][1], batch, {})
            old.append((jax.device_get(metrics), jax.device_get(new_state)))
    new = [(None, state)]
    for batch in batches():
        new_state, metrics, _ = optax_step(new[-1][1], batch, {})
        new.append((jax.device_get(metrics), jax.device_get(new_state)))
    return config, new, old, away


# ---------------------------------------------------------------------------------------
# 1. The learning-rate schedule


def test_lr_is_constant_then_decays_linearly_per_epoch():
    cfg = types.SimpleNamespace(lr=2e-4, niter=3, niter_decay=4, lr_decay_per_step=False)
    spe = 5
    got = np.array([float(schedule.learning_rate(s, spe, cfg)) for s in range(9 * spe)])
    for s, value in enumerate(got):
        k = s // spe
        want = cfg.lr if k < cfg.niter else max(cfg.lr * (1 - (k - cfg.niter) / cfg.niter_decay), 0.0)
        assert value == pytest.approx(want, rel=1e-6, abs=1e-12), (s, k)
    per_epoch = got[::spe]
    assert list(per_epoch[:3]) == pytest.approx([2e-4] * 3)
    # Last epoch of the schedule (k = niter + niter_decay - 1 = 6): lr / niter_decay; then 0.
    assert per_epoch[6] == pytest.approx(cfg.lr / cfg.niter_decay)
    assert per_epoch[7] == per_epoch[8] == 0.0
    assert schedule.total_steps(spe, cfg) == 7 * spe
    # Constant within an epoch.
    assert all(len(set(got[k * spe:(k + 1) * spe])) == 1 for k in range(9))


def test_lr_decay_per_step_is_linear_within_epochs():
    cfg = types.SimpleNamespace(lr=2e-4, niter=3, niter_decay=4, lr_decay_per_step=True)
    epoch_cfg = types.SimpleNamespace(**dict(vars(cfg), lr_decay_per_step=False))
    spe = 5
    total = schedule.total_steps(spe, cfg)
    got = np.array([float(schedule.learning_rate(s, spe, cfg)) for s in range(total + 3)])
    start = cfg.niter * spe
    assert np.all(got[:start + 1] == np.float32(cfg.lr))
    for s in range(start, total + 3):
        want = max(cfg.lr * (1 - (s - start) / (cfg.niter_decay * spe)), 0.0)
        assert got[s] == pytest.approx(want, rel=1e-5, abs=1e-12), s
    assert np.all(np.diff(got[start:total + 1]) < 0)  # strictly decreasing, step by step
    assert got[total] == 0.0 and got[-1] == 0.0
    # At epoch starts it agrees with the per-epoch schedule.
    for k in range(cfg.niter + cfg.niter_decay):
        assert got[k * spe] == pytest.approx(float(schedule.learning_rate(k * spe, spe, epoch_cfg)), rel=1e-5)


def test_gradient_clipping_bounds_what_a_spike_leaves_in_adam():
    """train.grad_clip_norm: a gradient far over the norm reaches Adam scaled down to it, so the
    second moment it leaves is the clipped one; without clipping the optimizers' states keep
    their structure (checkpoints of runs without it restore)."""
    from pix2pixhd_jax.training import oasis_step

    params = {"w": np.ones((3,), np.float32), "b": np.zeros((2,), np.float32)}
    spike = {"w": np.full((3,), 1e6, np.float32), "b": np.full((2,), -1e6, np.float32)}
    cfg = dict(lr=1e-3, niter=1, niter_decay=0, lr_decay_per_step=False, beta1=0.0, beta2=0.999, lr_D=-1.0,
               niter_fix_global=0, grad_clip_norm=2.0)
    cfg, plain = ml_collections.ConfigDict(cfg), ml_collections.ConfigDict(dict(cfg, grad_clip_norm=0.0))
    for make in (lambda c: oasis_step.oasis_optimizers(c, 10)[1], lambda c: train_step.optimizers(c, 10)[1]):
        tx, tx_plain = make(cfg), make(plain)
        _, state = tx.update(spike, tx.init(params), params)
        nu = [leaf for leaf in jax.tree_util.tree_leaves(state) if getattr(leaf, "shape", ()) == (3,)][-1]
        scaled = 1e6 * 2.0 / np.sqrt(5 * 1e12)  # each entry of the spike scaled to global norm 2
        np.testing.assert_allclose(np.asarray(nu), (1 - 0.999) * scaled ** 2, rtol=1e-5)
        _, plain_state = tx_plain.update(spike, tx_plain.init(params), params)
        assert len(state) == len(plain_state) + 1  # the clip's (empty) state is the only addition
        plain_nu = [leaf for leaf in jax.tree_util.tree_leaves(plain_state) if getattr(leaf, "shape", ()) == (3,)][-1]
        np.testing.assert_allclose(np.asarray(plain_nu), (1 - 0.999) * 1e12, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# 2. The local stage: G1 frozen for niter_fix_global epochs (and the step's lr metric)


def test_with_two_enhancers_only_the_outermost_trains_during_the_fixed_stage():
    """The reference trains only 'model2*' (the outermost enhancer) for niter_fix_global epochs
    with two enhancers; G1 and enhancer_1 stay fixed, then all of G trains."""
    config = load_test_config(*TINY, "model.netG=local", "model.n_local_enhancers=2", "model.n_blocks_local=1",
                              "train.niter_fix_global=1")
    nets = Networks(config)
    state0 = fast_state(nets, H, W)
    gen0 = state0.g_params["generator"]
    labels = stage_labels(state0.g_params)
    stages = {name: set(jax.tree_util.tree_leaves(tree)) for name, tree in labels["generator"].items()}
    assert stages == {"global_generator": {FIXED}, "enhancer_1": {FIXED}, "enhancer_2": {TRAINED}}
    step = jax.jit(make_train_step(config, 2))
    states = [state0]
    for i in range(3):  # epochs 0, 0, 1
        states.append(step(states[-1], make_batch(2, H, W, LABEL_NC, seed=40 + i), {})[0])
    for i in (1, 2):
        gen, prev = states[i].g_params["generator"], states[i - 1].g_params["generator"]
        assert trees_equal(gen["global_generator"], gen0["global_generator"])
        assert trees_equal(gen["enhancer_1"], gen0["enhancer_1"])
        assert changed_fraction(gen["enhancer_2"], prev["enhancer_2"]) > 0.9
    gen3 = states[3].g_params["generator"]
    for name in ("global_generator", "enhancer_1", "enhancer_2"):
        assert changed_fraction(gen3[name], states[2].g_params["generator"][name]) > 0.9, name


def test_local_stage_freezes_g1_then_trains_it_with_a_fresh_adam(runs):
    config, new, *_ = runs
    spe = SPE
    state0 = new[0][1]
    g1_0, rest_0 = g1_and_rest(state0.g_params)
    assert g1_0 is not None and "enhancer_1" in rest_0["generator"]
    g1_opt_0 = g_adam(state0.g_opt, FIXED)
    assert int(g1_opt_0.count) == 0

    # 8 steps, epochs 0, 0, 1, 1, 2, 2, 3, 3
    states, metrics = [state for _, state in new], [scalars(m) for m, _ in new[1:]]

    lr = config.train.lr
    assert [m["lr"] for m in metrics] == pytest.approx([lr, lr, lr, lr, lr / 2, lr / 2, 0.0, 0.0])
    for i, m in enumerate(metrics):
        assert m["lr"] == pytest.approx(float(schedule.learning_rate(i, spe, config.train)))
    assert [m["global_generator_frozen"] for m in metrics] == [1.0, 1.0] + [0.0] * 6

    for i in (1, 2):  # epoch 0: G1 and its Adam state untouched, the enhancer and D train
        g1, rest = g1_and_rest(states[i].g_params)
        assert trees_equal(g1, g1_0), f"G1 moved in frozen step {i}"
        assert trees_equal(g_adam(states[i].g_opt, FIXED), g1_opt_0)
        assert changed_fraction(rest, g1_and_rest(states[i - 1].g_params)[1]) > 0.9
        assert changed_fraction(states[i].d_params, states[i - 1].d_params) > 0.9
        assert int(g_adam(states[i].g_opt, TRAINED).count) == i
    # Epoch 1: G1 trains, its Adam starting fresh (count 1 after its first update).
    g1_3, _ = g1_and_rest(states[3].g_params)
    assert changed_fraction(g1_3, g1_0) > 0.9
    assert int(g_adam(states[3].g_opt, FIXED).count) == 1
    assert int(g_adam(states[4].g_opt, FIXED).count) == 2
    assert int(g_adam(states[4].g_opt, TRAINED).count) == 4
    # Epoch 3: lr 0, nothing moves.
    assert trees_equal(states[8].g_params, states[6].g_params)
    assert trees_equal(states[8].d_params, states[6].d_params)


# ---------------------------------------------------------------------------------------
# 3. The optax optimizer against the two-part Adam; two-part checkpoints

def test_the_optax_optimizer_trains_as_the_two_part_adam_did(runs):
    """Through both stages (G1 frozen, then trained: the test above) and three lr values."""
    _, new, old, away = runs
    assert len({float(m["lr"]) for m, _ in new[1:]}) == 3
    for i in range(1, STEPS + 1):
        (m_new, s_new), (m_old, s_old) = new[i], old[i]
        assert set(m_new) == set(m_old)
        for key in m_old:
            assert float(m_new[key]) == pytest.approx(float(m_old[key]), rel=1e-5, abs=1e-9), (i, key)
        for part in ("g_params", "d_params", "g_stats", "d_stats"):
            got, want = flat(getattr(s_new, part)), flat(getattr(s_old, part))
            assert got.keys() == want.keys()
            for key in want:
                if (part, key) not in away:
                    assert_alike(got[key], want[key], f"step {i} {part}{key}")


def test_a_two_part_checkpoint_converts_to_the_optax_state_of_its_step(runs, tmp_path):
    config, new, old, away = runs
    save(tmp_path, SAVED_AT, old[SAVED_AT][1])
    like = jax.eval_shape(lambda r: init_train_state(Networks(config), r, H, W), jax.random.PRNGKey(0))
    converted = old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like)
    want = new[SAVED_AT][1]
    assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(want)
    got, expected = flat(converted), flat(want)
    for key in filter(lambda k: compared(k, away), expected):
        assert_alike(got[key], expected[key], key)
    assert int(g_adam(converted.g_opt, FIXED).count) == 1 and int(g_adam(converted.g_opt, TRAINED).count) == 3

    # A checkpoint of today's layout is left to the plain restore.
    save(tmp_path / "optax", SAVED_AT, want)
    assert old_checkpoints.restore_two_adam_state(str(tmp_path / "optax"), SAVED_AT, like) is None
    # One of another model does not pass as this config's.
    other = load_test_config(*TINY, *LOCAL, "model.ngf=8")
    like_other = jax.eval_shape(lambda r: init_train_state(Networks(other), r, H, W), jax.random.PRNGKey(0))
    with pytest.raises(CheckpointError, match="does not fit this config"):
        old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like_other)
    # Damaged: a reading error names the checkpoint; without its metadata it is left to the
    # plain restore (which reports it).
    def unreadable(*args):
        raise ValueError("NOT_FOUND")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "restore_to_host", unreadable)
        with pytest.raises(CheckpointError, match=f"{SAVED_AT}: the checkpoint cannot be read \\(NOT_FOUND\\)"):
            old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like)
    (tmp_path / "checkpoints" / str(SAVED_AT) / "state" / "_METADATA").unlink()
    assert old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like) is None


@pytest.mark.parametrize("generator", [(), ("model.netG=local", "model.n_local_enhancers=2")])
def test_each_moment_lands_at_its_parameter(generator, tmp_path):
    """Global generator (no fixed part: 'global' is None) and two enhancers (the fixed part is
    {name: tree}): every Adam moment of the two parts is found at its parameter, in its stage."""
    config = load_test_config(*TINY, *generator, "model.n_blocks_local=1")
    state = fast_state(Networks(config), H, W)
    rng = np.random.default_rng(0)
    old = two_adam_state.from_state(state, config.train)
    old = old.replace(g_opt=jax.tree_util.tree_map(lambda x: rng.standard_normal(x.shape).astype(x.dtype)
                                                   if x.ndim else np.int32(rng.integers(1, 9)), old.g_opt),
                      step=np.int32(11))
    save(tmp_path, 11, old)
    converted = old_checkpoints.restore_two_adam_state(str(tmp_path), 11, jax.eval_shape(lambda: state))
    fixed, rest = old.g_opt["global"], old.g_opt["rest"]
    labels = {jax.tree_util.keystr(path): label
              for path, label in jax.tree_util.tree_leaves_with_path(stage_labels(state.g_params))}
    for moment in ("mu", "nu"):
        want = flat(two_adam_state.merge_fixed(None if fixed is None else getattr(fixed, moment), getattr(rest, moment)))
        for stage in (FIXED, TRAINED):
            got = flat(getattr(g_adam(converted.g_opt, stage), moment))
            assert set(got) == {k for k, label in labels.items() if label == stage}
            for key, value in got.items():
                np.testing.assert_array_equal(value, want[key])
    assert int(g_adam(converted.g_opt, FIXED).count) == (0 if fixed is None else int(fixed.count))
    assert int(g_adam(converted.g_opt, TRAINED).count) == int(rest.count)
    assert int(converted.g_opt[0].inner_states[FIXED].inner_state.step) == 11 and int(converted.g_opt[1].count) == 11
    assert int(converted.d_opt[1].count) == 11
    assert set(labels.values()) == ({TRAINED} if fixed is None else {FIXED, TRAINED})


def test_the_loop_resumes_from_a_two_part_checkpoint(runs, tmp_path):
    config, new, old, away = runs
    save(tmp_path, SAVED_AT, old[SAVED_AT][1])
    nets, mesh, workdir = Networks(config), sharding.make_mesh(jax.devices()[:1]), str(tmp_path)
    # As the trainers run: restore (converting the old layout), step on from the saved data position, save.
    state, start, shardings = loop.restore_or_init(workdir, "state", lambda rng: init_train_state(nets, rng, H, W), 0,
                                                   mesh, convert_old=old_checkpoints.restore_two_adam_state)
    assert start == SAVED_AT
    train = loop.jit_step(make_train_step(config, SPE), mesh, shardings, 1, has_outputs=True)
    out = loop.Outputs(workdir, "train", "state", start, STEPS, SPE, 2, STEPS, 2, progress=False)
    keys = set(make_batch(2, H, W, LABEL_NC))
    for step, (_, batch) in zip(range(start + 1, STEPS + 1), loop.device_batches(batches(start), mesh, keys)):
        state, metrics, _ = train(state, batch, {})
        out.read(step, metrics)
    out.finish(step, state)
    assert step == STEPS
    got, want = flat(jax.device_get(state)), flat(new[STEPS][1])
    assert got.keys() == want.keys()
    for key in filter(lambda k: compared(k, away), want):
        assert_alike(got[key], want[key], key)
    # Its own save is in today's layout.
    assert checkpoint.latest_step(str(tmp_path), "state") == STEPS
    assert not old_checkpoints.is_two_adam(checkpoint.item_metadata(str(tmp_path), STEPS, "state"))
