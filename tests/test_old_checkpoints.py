"""The optax optimizer against the two-part Adam it replaced, and checkpoints of that layout
resuming in today's.

tests/two_adam_state.py keeps the earlier train state and update rule as they were. The step
runs with either rule (the same step body: only apply_gradients differs) on the same batches
through the local stage's freeze boundary and the lr decay; losses, lr, the freeze flag and
every parameter must agree. A two-part checkpoint converts to exactly the optax state of the
same step, and the loop resumes from one.
"""

import jax
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.runtime import loop, sharding
from pix2pixhd_jax.training import old_checkpoints, step as train_step
from pix2pixhd_jax.training.step import FIXED, TRAINED, init_train_state, make_train_step, stage_labels
from step_helpers import H, LABEL_NC, TINY, W, fast_state, g_adam, make_batch
import two_adam_state

SPE, STEPS, SAVED_AT = 2, 6, 3  # epochs 0 (G1 frozen), 1, 2 (lr halved); saved after G1's first update
LOCAL = (*TINY, "model.netG=local", "model.n_local_enhancers=1", "model.n_blocks_local=1",
         "train.niter_fix_global=1", "train.niter=1", "train.niter_decay=2")


def batches(start=0):
    return (make_batch(2, H, W, LABEL_NC, seed=i) for i in range(start, STEPS))


def flat(tree):
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def save(workdir, step, state):
    with checkpoint.train_manager(str(workdir), 2) as mngr:
        checkpoint.save_state(mngr, step, state)
        mngr.wait_until_finished()


@pytest.fixture(scope="module")
def runs():
    """The step with each rule from the same state: (config, [(metrics, state)] optax, the same two-part)."""
    config = load_test_config(*LOCAL)
    state = fast_state(Networks(config), H, W)
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
    return config, new, old


def test_the_optax_optimizer_trains_as_the_two_part_adam_did(runs):
    _, new, old = runs
    assert [float(m["global_generator_frozen"]) for m, _ in new[1:]] == [1, 1, 0, 0, 0, 0]
    assert len({float(m["lr"]) for m, _ in new[1:]}) == 2
    for i in range(1, STEPS + 1):
        (m_new, s_new), (m_old, s_old) = new[i], old[i]
        assert set(m_new) == set(m_old)
        for key in m_old:
            assert float(m_new[key]) == pytest.approx(float(m_old[key]), rel=1e-6, abs=1e-9), (i, key)
        for part in ("g_params", "d_params", "g_stats", "d_stats"):
            got, want = flat(getattr(s_new, part)), flat(getattr(s_old, part))
            assert got.keys() == want.keys()
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-9, err_msg=f"step {i} {part}{key}")
    # G1 held in epoch 0, trained after: the comparison covers both stages.
    g1 = [flat(s.g_params["generator"]["global_generator"]) for _, s in new]
    assert all(np.array_equal(g1[0][k], g1[2][k]) for k in g1[0])
    assert not all(np.array_equal(g1[2][k], g1[3][k]) for k in g1[0])


def test_a_two_part_checkpoint_converts_to_the_optax_state_of_its_step(runs, tmp_path):
    config, new, old = runs
    save(tmp_path, SAVED_AT, old[SAVED_AT][1])
    like = jax.eval_shape(lambda r: init_train_state(Networks(config), r, H, W), jax.random.PRNGKey(0))
    converted = old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like)
    want = new[SAVED_AT][1]
    assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(want)
    got, expected = flat(converted), flat(want)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-9, err_msg=key)
    assert int(g_adam(converted.g_opt, FIXED).count) == 1 and int(g_adam(converted.g_opt, TRAINED).count) == 3

    # A checkpoint of today's layout is left to the plain restore.
    save(tmp_path / "optax", SAVED_AT, want)
    assert old_checkpoints.restore_two_adam_state(str(tmp_path / "optax"), SAVED_AT, like) is None
    # One of another model does not pass as this config's.
    other = load_test_config(*LOCAL, "model.ngf=8")
    like_other = jax.eval_shape(lambda r: init_train_state(Networks(other), r, H, W), jax.random.PRNGKey(0))
    with pytest.raises(CheckpointError, match="does not fit this config"):
        old_checkpoints.restore_two_adam_state(str(tmp_path), SAVED_AT, like_other)


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
    config, new, old = runs
    save(tmp_path, SAVED_AT, old[SAVED_AT][1])
    nets = Networks(config)
    job = loop.Job(name="train", item="state", seed=0, init=lambda rng: init_train_state(nets, rng, H, W),
                   step=make_train_step(config, SPE), extra_args=({},), has_outputs=True, batches=batches,
                   batch_keys=sorted(make_batch(2, H, W, LABEL_NC)), global_batch=2, steps_per_epoch=SPE,
                   total_steps=STEPS, save_due=lambda step: False, print_freq=STEPS, keep_checkpoints=2,
                   fix_hint="", convert_old=old_checkpoints.restore_two_adam_state)
    result = loop.run(job, config, str(tmp_path), sharding.make_mesh(jax.devices()[:1]), progress=False)
    assert result.step == STEPS
    got, want = flat(jax.device_get(result.state)), flat(new[STEPS][1])
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-7, err_msg=key)
    # Its own save is in today's layout.
    assert checkpoint.latest_step(str(tmp_path), "state") == STEPS
    assert not old_checkpoints.is_two_adam(checkpoint.item_metadata(str(tmp_path), STEPS, "state"))
