"""OASIS through `train` itself: a run stopped and resumed ends where an uninterrupted one does,
and the moving-average G's batch statistics are refreshed (train.ema_stats_passes passes of it in
training mode over the coming batches) at the scheduled saves and at the end, without touching G,
D or the average's weights.

A tiny OASIS model (conftest.TINY_OASIS) on six 128x64 synthetic scenes scaled to 64x32, batch 2.
"""

import jax
import numpy as np
import pytest

from conftest import TINY_OASIS, load_test_config
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.runtime import sharding
from pix2pixhd_jax.training.train import ema_statistics_refresh, train

pytestmark = pytest.mark.slow  # four short trainings, each compiling OASIS's step


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from pix2pixhd_jax.data import synthetic

    out = tmp_path_factory.mktemp("scenes")
    synthetic.write_dataset(out, 6, 2, 128, 64, seed=0, workers=1, progress=False)
    return out


def config_for(data, *overrides):
    return load_test_config(*[f"--config.{o}" for o in TINY_OASIS + (
        f"data.dataroot={data}", "data.load_size=64", "train.batch_size=2", "train.print_freq=1",
        "train.display_freq=100", "train.keep_checkpoints=10", "train.ema_stats_passes=2") + overrides])


def host(state):
    return jax.tree_util.tree_map(np.asarray, state)


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(data, tmp_path):
    whole = host(train(config_for(data, "train.max_steps=4", "train.save_latest_freq=2"), str(tmp_path / "a"),
                       progress=False))
    train(config_for(data, "train.max_steps=2", "train.save_latest_freq=2"), str(tmp_path / "b"), progress=False)
    resumed = host(train(config_for(data, "train.max_steps=4", "train.save_latest_freq=2"), str(tmp_path / "b"),
                         progress=False))
    assert int(whole.step) == int(resumed.step) == 4
    assert jax.tree_util.tree_structure(whole) == jax.tree_util.tree_structure(resumed)
    for x, y in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)


def test_the_moving_average_gets_its_own_batch_statistics_before_it_is_saved(data, tmp_path):
    """With passes, the run's final averaged-G statistics are the refresh of those a run without
    passes ends with (only the end refreshes here: no save falls inside the run); G, D and the
    averaged weights are the same either way."""
    plain_config = config_for(data, "train.max_steps=3", "train.save_latest_freq=100", "train.ema_stats_passes=0")
    plain = train(plain_config, str(tmp_path / "plain"), progress=False)
    refreshed = host(train(config_for(data, "train.max_steps=3", "train.save_latest_freq=100"),
                           str(tmp_path / "refreshed"), progress=False))
    for field in ("g_params", "g_stats", "d_params", "ema_params"):
        assert leaves_equal(getattr(refreshed, field), host(getattr(plain, field))), field
    assert not leaves_equal(refreshed.ema_stats, host(plain.ema_stats))

    config = config_for(data, "train.max_steps=3")
    mesh = sharding.make_mesh(None)
    shardings = jax.tree_util.tree_map(lambda x: x.sharding, plain)
    refresh = ema_statistics_refresh(config, InputPipeline(config, "train"), mesh, shardings)
    by_hand = host(refresh(plain, 3).ema_stats)
    for x, y in zip(jax.tree_util.tree_leaves(refreshed.ema_stats), jax.tree_util.tree_leaves(by_hand)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    assert ema_statistics_refresh(config_for(data, "train.ema_stats_passes=0"), None, mesh, shardings) is None
    assert ema_statistics_refresh(config_for(data, "train.ema_decay=0.0"), None, mesh, shardings) is None
