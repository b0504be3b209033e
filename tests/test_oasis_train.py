"""OASIS through `pix2pixhd-jax train` itself: a run stopped and resumed ends where an
uninterrupted one does, and the moving-average G's batch statistics are refreshed
(train.ema_stats_passes passes of it in training mode over the coming batches) at the scheduled
saves and at the end, without touching G, D or the average's weights.

A tiny OASIS model (conftest.TINY_OASIS) on six 128x64 synthetic scenes scaled to 64x32, batch 2;
every training is a CLI process sharing one compilation cache.
"""

import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, TEST_BASE, TINY_OASIS, cli_env, load_test_config, raw_state
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.runtime import sharding
from pix2pixhd_jax.training.train import ema_statistics_refresh

pytestmark = [pytest.mark.slow,  # four short trainings, one compile of OASIS's step between them
              pytest.mark.xdist_group("oasis_train")]  # one worker makes the trainings for both tests

BASE = ("data.load_size=64", "train.batch_size=2", "train.print_freq=1", "train.display_freq=100",
        "train.keep_checkpoints=10", "train.ema_stats_passes=2")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from pix2pixhd_jax.data import synthetic

    out = tmp_path_factory.mktemp("scenes")
    synthetic.write_dataset(out, 6, 2, 128, 64, seed=0, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def env():
    return cli_env(TF_CPP_MIN_LOG_LEVEL="2")


def overrides(data, *extra):
    return TEST_BASE + TINY_OASIS + (f"data.dataroot={data}",) + BASE + extra


def train(data, env, workdir, *extra):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", "train", "--config", str(ROOT / "configs" / "synthetic_demo.py"),
           "--workdir", str(workdir), *[f"--config.{o}" for o in overrides(data, *extra)], "--no-test", "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_close(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)


def leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


class Held:
    """A restored state's fields as attributes, with the train state's replace()."""

    def __init__(self, fields):
        self.__dict__.update(fields)

    def replace(self, **changes):
        return Held({**self.__dict__, **changes})


@pytest.fixture(scope="module")
def runs(data, env, tmp_path_factory):
    """Four short trainings: 4 steps whole; 2 steps then resumed to 4; 2 steps without the
    moving average's statistics passes. Checkpoints every 2 steps, all kept."""
    root = tmp_path_factory.mktemp("runs")
    train(data, env, root / "whole", "train.max_steps=4", "train.save_latest_freq=2")
    train(data, env, root / "resumed", "train.max_steps=2", "train.save_latest_freq=2")
    train(data, env, root / "resumed", "train.max_steps=4", "train.save_latest_freq=2")
    train(data, env, root / "plain", "train.max_steps=2", "train.save_latest_freq=2", "train.ema_stats_passes=0")
    return root


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(runs):
    whole, resumed = raw_state(runs / "whole", 4), raw_state(runs / "resumed", 4)
    assert int(whole["step"]) == int(resumed["step"]) == 4
    assert_close(whole, resumed)


def test_the_moving_average_gets_its_own_batch_statistics_before_it_is_saved(data, runs):
    """With passes, the averaged G's statistics saved at step 2 (the run's end and a scheduled
    save: one refresh) are the refresh of those a run without passes saves there; G, D and the
    averaged weights are the same either way."""
    plain, refreshed = raw_state(runs / "plain", 2), raw_state(runs / "resumed", 2)
    for field in ("g_params", "g_stats", "d_params", "ema_params"):
        assert leaves_equal(refreshed[field], plain[field]), field
    assert not leaves_equal(refreshed["ema_stats"], plain["ema_stats"])

    config = load_test_config(*[f"--config.{o}" for o in overrides(data, "train.max_steps=2")])
    mesh = sharding.make_mesh(None)
    state = Held(jax.device_put(plain))
    shardings = Held({"ema_stats": jax.tree_util.tree_map(lambda x: x.sharding, state.ema_stats)})
    refresh = ema_statistics_refresh(config, InputPipeline(config, "train"), mesh, shardings)
    assert_close(refreshed["ema_stats"], jax.tree_util.tree_map(np.asarray, refresh(state, 2).ema_stats))
    for off in ("train.ema_stats_passes=0", "train.ema_decay=0.0"):
        config = load_test_config(*[f"--config.{o}" for o in overrides(data, off)])
        assert ema_statistics_refresh(config, None, mesh, shardings) is None
