"""The training loop end to end: `pix2pixhd-jax train` on a tiny model and 64x32 synthetic scenes.

What a run leaves in its workdir, exact resumption after a SIGKILL, the SIGTERM save, the
refusal to resume another model's checkpoints (and the restore's own error behind it), the NaN
guard, and the global -> local two-stage recipe (train.init_from).

Runs go through subprocesses (the real command, real signals). XLA's CPU compiler is slow at
its default optimisation level (the flax init alone takes ~45 s to compile on two cores), so
the subprocesses compile at --xla_backend_optimization_level=0 and share a persistent
compilation cache: runs of the same model reuse the first run's programs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli_env, load_test_config, raw_state, read_events

# One xdist worker builds the trained runs once for all the tests here.
pytestmark = pytest.mark.xdist_group("train_loop")

W, H = 64, 32  # the training size: 128x64 scenes, scale_width to 64
STEPS = 12  # run A: 4 epochs of 3 batches
CONFIG = str(ROOT / "configs" / "synthetic_demo.py")


def tiny(data):
    return [f"--config.data.dataroot={data}", f"--config.data.load_size={W}", "--config.model.ngf=4",
            "--config.model.ndf=4", "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
            "--config.model.n_layers_D=1", "--config.train.batch_size=2", "--config.train.print_freq=1",
            "--config.train.display_freq=2"]


# Runs A and B: checkpoints every 2 steps, all kept.
RESUMABLE = [f"--config.train.max_steps={STEPS}", "--config.train.save_latest_freq=2",
             "--config.train.keep_checkpoints=10"]


@pytest.fixture(scope="module")
def env():
    return cli_env(TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from pix2pixhd_jax.data import synthetic

    out = tmp_path_factory.mktemp("scenes")
    synthetic.write_dataset(out, 6, 2, 128, 64, seed=0, workers=1, progress=False)
    return out


def train_cmd(data, workdir, *extra, test=False):
    return ([sys.executable, "-m", "pix2pixhd_jax.cli", "train", "--config", CONFIG, "--workdir", str(workdir),
             *tiny(data), *extra, "--quiet"] + ([] if test else ["--no-test"]))


def run(cmd, env, timeout=300):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def start(cmd, env, logdir):
    """Popen with stdout/stderr in files (no pipe to fill up while we poll)."""
    out, err = open(logdir / "stdout.txt", "w"), open(logdir / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
    out.close(), err.close()
    return proc


def wait_for(condition, proc, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def latest(workdir):
    from pix2pixhd_jax import checkpoint

    return checkpoint.latest_step(str(workdir), "state")


def saved_steps(workdir):
    root = workdir / "checkpoints"
    return sorted(int(d) for d in os.listdir(root) if d.isdigit()) if root.is_dir() else []


def metrics(workdir):
    path = workdir / "tensorboard" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def flat(tree):
    import jax

    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def compare(a, b, atol=1e-6):
    """(allclose, bitwise) over two trees with the same paths."""
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    close = all(np.allclose(fa[k], fb[k], rtol=0, atol=atol) for k in fa)
    bitwise = all(np.array_equal(fa[k], fb[k]) for k in fa)
    return close, bitwise


# ----- run A: the whole command, uninterrupted -------------------------------------------


class Background:
    """A run started now and awaited by its test, so that two runs share the two CPU cores."""

    def __init__(self, cmd, env, logdir):
        logdir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self.proc = start(cmd, env, logdir)

    def result(self, timeout=300):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"a background run took more than {timeout} s")
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode,
                                           (self.logdir / "stdout.txt").read_text(),
                                           (self.logdir / "stderr.txt").read_text())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def nan_cmd(data, workdir):
    # lr=1e38: the first Adam update (|update| <= 1 per parameter) sends the weights to about
    # +-1e38, still finite, and the next forward pass overflows.
    return train_cmd(data, workdir, "--config.train.lr=1e38", "--config.train.save_latest_freq=1",
                     "--config.train.max_steps=6")


def nan_lagged_cmd(data, workdir):
    # No save before step 3: the non-finite step 2 is not a save step, so its metrics are read
    # only once step 3 (a save step) is dispatched.
    return train_cmd(data, workdir, "--config.train.lr=1e38", "--config.train.save_latest_freq=3",
                     "--config.train.max_steps=6")


LOCAL = ["--config.model.netG=local", "--config.model.n_local_enhancers=1", "--config.model.n_blocks_local=1",
         "--config.model.num_D=3", "--config.model.ngf=2"]  # G1 gets ngf * 2 = 4 filters, like run A's G


def local_cmd(data, workdir, workdir_a):
    return train_cmd(data, workdir, *LOCAL, f"--config.train.init_from={workdir_a}",
                     "--config.train.niter_fix_global=1", "--config.train.max_steps=1")


@pytest.fixture(scope="module")
def runs(data, env, tmp_path_factory):
    """Run A (the whole command, uninterrupted); then, beside the tests that follow, the NaN-guard
    run (after A, so that it finds A's compiled init in the cache) and the local stage (from A)."""
    base = tmp_path_factory.mktemp("runs")
    background = {}
    try:
        workdir_a = base / "a" / "workdir"
        proc = run(train_cmd(data, workdir_a, *RESUMABLE, test=True), env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        background["nan"] = Background(nan_cmd(data, base / "nan" / "workdir"), env, base / "nan")
        background["nan_lagged"] = Background(nan_lagged_cmd(data, base / "nan_lagged" / "workdir"), env,
                                              base / "nan_lagged")
        background["local"] = Background(local_cmd(data, base / "local" / "workdir", workdir_a), env,
                                         base / "local")
        yield SimpleNamespace(a=workdir_a, a_proc=proc, background=background,
                              nan=base / "nan" / "workdir", nan_lagged=base / "nan_lagged" / "workdir",
                              local=base / "local" / "workdir")
    finally:
        for b in background.values():
            b.stop()


@pytest.fixture(scope="module")
def run_a(runs):
    return runs.a, runs.a_proc


@pytest.mark.slow
def test_cli_end_to_end_writes_every_output(run_a, data):
    workdir, proc = run_a
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["ngf"] == 4 and config["data"]["dataroot"] == str(data)

    assert latest(workdir) == STEPS
    assert saved_steps(workdir) == list(range(2, STEPS + 1, 2))
    assert (workdir / "checkpoints" / str(STEPS) / "state").is_dir()

    # metrics.jsonl: one line per step (print_freq=1), every scalar finite.
    rows = metrics(workdir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        for key in ("loss_G", "loss_D", "loss_G_GAN", "loss_G_GAN_Feat", "loss_D_fake", "loss_D_real", "lr",
                    "grad_norm_G", "grad_norm_D", "images_per_second", "epoch"):
            assert key in r and np.isfinite(r[key]), (key, r)
    assert rows[0]["lr"] == pytest.approx(config["train"]["lr"]) and rows[-1]["epoch"] == (STEPS - 1) // 3

    # The TensorBoard events hold the same scalars and the sample image.
    events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = {}
    for event in read_events(events[0]):
        for value in event.summary.value:
            tags.setdefault(value.tag, []).append(event.step)
    assert tags["loss_G"] == list(range(1, STEPS + 1))
    assert {"loss_D", "loss_G_GAN_Feat", "lr", "grad_norm_G", "images_per_second"} <= tags.keys()
    images = [t for t in tags if "generated" in t]
    assert images and tags[images[0]] == list(range(2, STEPS + 1, 2))

    # samples: label colours | boundaries | generated | real, one row per example of the batch.
    latest_png = np.asarray(Image.open(workdir / "samples" / "latest.png"))
    assert latest_png.shape == (2 + 2 * (H + 2), 2 + 4 * (W + 2), 3)
    assert np.array_equal(latest_png, np.asarray(Image.open(workdir / "samples" / f"step_{STEPS:07d}.png")))
    for col in range(4):
        panel = latest_png[2:2 + H, 2 + col * (W + 2):2 + col * (W + 2) + W]
        assert panel.std() > 0, f"panel {col} of the sample grid is blank"

    # test_results: every test scene synthesized at the training size, plus an overview.
    results = workdir / "test_results"
    synthesized = sorted(p.name for p in results.glob("*_synthesized.png"))
    test_names = sorted(p.stem for p in (data / "test_label").glob("*.png"))
    assert synthesized == [f"{n}_synthesized.png" for n in test_names] and len(synthesized) == 2
    for name in synthesized:
        assert Image.open(results / name).size == (W, H)
    assert np.asarray(Image.open(results / "grid.png")).shape == (2 + 2 * (H + 2), 2 + 3 * (W + 2), 3)

    # stdout says where everything went.
    assert f"trained to step {STEPS}; checkpoints in {workdir / 'checkpoints'}" in proc.stdout
    assert str(workdir / "samples") in proc.stdout and str(workdir / "tensorboard") in proc.stdout
    assert f"synthesized 2 test label maps into {results}" in proc.stdout


# ----- resumption ----------------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(run_a, data, env, tmp_path):
    workdir_a, _ = run_a
    workdir = tmp_path / "run_b"
    cmd = train_cmd(data, workdir, *RESUMABLE)
    proc = start(cmd, env, tmp_path)
    wait_for(lambda: (latest(workdir) or 0) >= 4, proc, 240, "checkpoint 4")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    resumed_from = latest(workdir)
    assert 4 <= resumed_from < STEPS, f"run B got to checkpoint {resumed_from} before it was killed"
    before = metrics(workdir)

    second = run(cmd, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert latest(workdir) == STEPS

    # One record per step: those the killed run wrote after its checkpoint are dropped on resume.
    records = metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1)), [r["step"] for r in records]
    assert records[:resumed_from] == before[:resumed_from]
    # The resumed run continues at the step after its checkpoint, and every later step sees the
    # same batch with the same parameters as run A (same losses).
    after = records[resumed_from:]
    by_step_a = {r["step"]: r for r in metrics(workdir_a)}
    for r in after:
        for key in ("loss_G", "loss_D", "loss_G_GAN_Feat", "grad_norm_G", "grad_norm_D", "lr"):
            assert r[key] == pytest.approx(by_step_a[r["step"]][key], rel=1e-6, abs=1e-6), (r["step"], key)

    # The final train states (parameters, Adam states, rng, step counter) agree.
    state_a, state_b = raw_state(workdir_a, STEPS), raw_state(workdir, STEPS)
    close, bitwise = compare(state_a, state_b)
    assert close, "run B's final state differs from run A's"
    assert int(state_b["step"]) == STEPS
    # On CPU the resumed run is bitwise equal to the uninterrupted one.
    assert bitwise, "run B's final state is close to but not bitwise equal to run A's"
    # The convenience loader sees the same networks.
    from pix2pixhd_jax import checkpoint

    assert compare(checkpoint.load_network_params(str(workdir_a)), checkpoint.load_network_params(str(workdir)))[1]


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_exits_143(data, env, tmp_path):
    workdir = tmp_path / "run"
    # No periodic checkpoint before step 30 (epoch 10): only the SIGTERM save can write one.
    proc = start(train_cmd(data, workdir, "--config.train.save_latest_freq=1000"), env, tmp_path)
    wait_for(lambda: len(metrics(workdir)) >= 2, proc, 240, "two logged steps")
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 60 s of SIGTERM")
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 143, stderr[-4000:]
    reached = metrics(workdir)[-1]["step"]
    assert 2 <= reached < 30
    assert saved_steps(workdir) == [reached] and latest(workdir) == reached
    assert f"SIGTERM: saved step {reached} in {workdir / 'checkpoints'}; run the same command to resume" in stderr

    lines_before = len(metrics(workdir))
    resumed = run(train_cmd(data, workdir, "--config.train.save_latest_freq=1000",
                            f"--config.train.max_steps={reached + 2}"), env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [r["step"] for r in metrics(workdir)[lines_before:]] == [reached + 1, reached + 2]
    assert latest(workdir) == reached + 2
    assert int(raw_state(workdir, reached + 2)["step"]) == reached + 2


def test_a_checkpoint_of_another_model_is_refused_with_exit_2(run_a, data, capsys):
    from pix2pixhd_jax.cli import main

    workdir, _ = run_a
    before = (workdir / "config.json").read_text()
    code = main(["train", "--config", CONFIG, "--workdir", str(workdir), *tiny(data), "--config.model.ngf=8",
                 "--quiet", "--no-test"])
    err = capsys.readouterr().err
    assert code == 2
    assert "holds checkpoints of another model" in err and "model.ngf: 4 in the workdir, 8 now" in err
    assert "config.json" in err
    assert (workdir / "config.json").read_text() == before  # the workdir's config is left alone
    assert latest(workdir) == STEPS


def test_a_checkpoint_that_does_not_restore_leaves_the_workdir_config_alone(run_a, data, capsys, monkeypatch):
    """The fallback behind check_resumable: a shape it does not list (here: ngf, taken off its
    list) fails in the restore, with the checkpoint's path, exit 2, and config.json untouched so
    that the advice to resume with it holds."""
    from pix2pixhd_jax.cli import main
    from pix2pixhd_jax.training import train

    workdir, _ = run_a
    model_fields = tuple(f for f in train._SHAPE_FIELDS["model"] if f != "ngf")
    monkeypatch.setitem(train._SHAPE_FIELDS, "model", model_fields)
    before = (workdir / "config.json").read_text()
    code = main(["train", "--config", CONFIG, "--workdir", str(workdir), *tiny(data), "--config.model.ngf=8",
                 "--quiet", "--no-test"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {workdir / 'checkpoints' / str(STEPS)}: the checkpoint does not fit this config" in err
    assert (workdir / "config.json").read_text() == before
    assert latest(workdir) == STEPS


# ----- the NaN guard -------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(runs):
    import re

    workdir = runs.nan
    proc = runs.background["nan"].result()
    assert proc.returncode == 3  # the CLI's status for a stopped, non-finite run
    assert "Traceback" not in proc.stderr
    match = re.search(r"error: non-finite loss at step (\d+): .*The last good checkpoint is kept in (\S+) \(step (\d+)\)",
                      proc.stderr)
    assert match, proc.stderr[-4000:]
    bad, where, good = int(match[1]), match[2], int(match[3])
    assert where == str(workdir / "checkpoints")
    assert bad >= 2 and good == bad - 1
    # Nothing at or after the bad step was saved or logged; what was saved is finite.
    assert saved_steps(workdir) == list(range(1, bad))
    assert [r["step"] for r in metrics(workdir)] == list(range(1, bad))
    for step in saved_steps(workdir):
        state = raw_state(workdir, step)
        for path, leaf in flat(state).items():
            if leaf.dtype.kind == "f":
                assert np.isfinite(leaf).all(), f"checkpoint {step}: {path} is not finite"


def test_a_non_finite_step_read_late_stops_the_run_before_the_next_step_is_saved(runs):
    """The loop reads a step's metrics once the next step is dispatched. Step 2 (the first after
    the lr=1e38 update) is non-finite; it is read after step 3, a save step, was dispatched: the
    run stops at step 2 and step 3's state is not saved."""
    workdir = runs.nan_lagged
    proc = runs.background["nan_lagged"].result()
    assert proc.returncode == 3, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    assert ("error: non-finite loss at step 2: " in proc.stderr
            and f"No checkpoint was saved in {workdir / 'checkpoints'} before it" in proc.stderr), proc.stderr[-4000:]
    assert saved_steps(workdir) == [] and latest(workdir) is None
    assert [r["step"] for r in metrics(workdir)] == [1]


# ----- global -> local ------------------------------------------------------------------

def _without_conv_out(generator_params):
    return {k: v for k, v in generator_params.items() if k != "conv_out"}


def _zero_state(config):
    """A train state of `config` with every array zero (no compile: eval_shape only)."""
    import jax
    import jax.numpy as jnp

    from pix2pixhd_jax.models.pix2pixhd import Networks
    from pix2pixhd_jax.training.step import init_train_state

    nets = Networks(config)
    shapes = jax.eval_shape(lambda r: init_train_state(nets, r, 16, 16), jax.random.PRNGKey(0))
    return nets, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def test_init_from_grafts_the_global_stage_into_the_local_model(run_a, data):
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.training import train

    workdir_a, _ = run_a
    config = load_test_config(*tiny(data), *LOCAL, f"--config.train.init_from={workdir_a}")
    nets, state = _zero_state(config)
    grafted = train.load_initial_weights(state, nets, str(workdir_a))
    source = checkpoint.load_network_params(str(workdir_a))

    g1 = grafted.g_params["generator"]["global_generator"]
    assert "conv_out" in source["generator"]["params"] and "conv_out" not in g1
    close, bitwise = compare(g1, _without_conv_out(source["generator"]["params"]))
    assert bitwise, "G1 is not the global stage's generator"
    # The enhancer starts as initialised (here: zeros), D's two coarser scales come from the
    # global stage, the new full-resolution scale_2 starts fresh.
    assert all(not leaf.any() for leaf in flat(grafted.g_params["generator"]["enhancer_1"]).values())
    d = grafted.d_params
    assert set(d) == {"scale_0", "scale_1", "scale_2"} and set(source["discriminator"]["params"]) == {"scale_0",
                                                                                                     "scale_1"}
    for scale in ("scale_0", "scale_1"):
        assert compare(d[scale], source["discriminator"]["params"][scale])[1], scale
    assert all(not leaf.any() for leaf in flat(d["scale_2"]).values())


def test_init_from_carries_batch_norm_statistics_into_g1(data, tmp_path):
    """With norm=batch G1's running statistics come from the global stage too."""
    import jax

    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.training import train

    overrides = [*tiny(data), "--config.model.norm=batch"]
    global_cfg = load_test_config(*overrides)
    _, global_state = _zero_state(global_cfg)
    rng = np.random.default_rng(0)
    randomize = lambda tree: jax.tree_util.tree_map(lambda x: rng.standard_normal(x.shape).astype(x.dtype), tree)
    models = {"generator": {"params": randomize(global_state.g_params["generator"]),
                            "batch_stats": randomize(global_state.g_stats["generator"])},
              "discriminator": {"params": randomize(global_state.d_params),
                                "batch_stats": randomize(global_state.d_stats)}}
    assert models["generator"]["batch_stats"], "norm=batch should give the generator batch statistics"
    checkpoint.save_models(str(tmp_path / "global"), 0, models, global_cfg)

    nets, state = _zero_state(load_test_config(*overrides, *LOCAL))
    grafted = train.load_initial_weights(state, nets, str(tmp_path / "global"))
    g1_params = grafted.g_params["generator"]["global_generator"]
    assert compare(g1_params, _without_conv_out(models["generator"]["params"]))[1]
    g1_stats = grafted.g_stats["generator"]["global_generator"]
    assert compare(g1_stats, models["generator"]["batch_stats"])[1], "G1's batch statistics were not loaded"
    for scale in ("scale_0", "scale_1"):
        assert compare(grafted.d_stats[scale], models["discriminator"]["batch_stats"][scale])[1]


def test_local_stage_keeps_the_grafted_g1_frozen_in_its_first_epoch(runs):
    from pix2pixhd_jax import checkpoint

    workdir_a, workdir = runs.a, runs.local
    proc = runs.background["local"].result()
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"networks initialised from {workdir_a}" in proc.stderr
    assert latest(workdir) == 1
    (row,) = metrics(workdir)
    assert row["global_generator_frozen"] == 1.0 and np.isfinite(row["loss_G"])

    source = checkpoint.load_network_params(str(workdir_a))
    local = checkpoint.load_network_params(str(workdir))
    g1 = local["generator"]["params"]["global_generator"]
    assert compare(g1, _without_conv_out(source["generator"]["params"]))[1], "G1 moved while frozen"
    # D trained for one step from the grafted scales: close to, but not equal to, the global stage's.
    d, d_source = local["discriminator"]["params"], source["discriminator"]["params"]
    assert set(d) == {"scale_0", "scale_1", "scale_2"}
    for scale in ("scale_0", "scale_1"):
        close, bitwise = compare(d[scale], d_source[scale], atol=2e-3)
        assert close and not bitwise, scale
