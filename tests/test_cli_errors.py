"""What a new user types wrong gets one line naming the value and the fix (exit 2), never a
traceback: batch sizes, unwritable workdirs, config variants and overrides, label ids a model
has no class for, a missing judge or Inception file; and the logs stay one record per step."""

import importlib.util
import json
import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, make_aligned, make_model_workdir, read_events
from pix2pixhd_jax import cli

DEMO = str(ROOT / "configs" / "synthetic_demo.py")


def fails(capsys, *argv):
    """main(argv) must exit 2 with a one-line error and no traceback; returns the message."""
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    return line


@pytest.mark.parametrize("batch", ["0", "-2"])
def test_a_batch_size_below_one(batch, tmp_path, capsys):
    msg = fails(capsys, "train", "--config", DEMO, "--workdir", str(tmp_path / "run"), f"--config.train.batch_size={batch}")
    assert f"train.batch_size={batch}: the global batch must be at least 1" in msg
    assert "--config.train.batch_size=1 or more" in msg


def test_a_workdir_that_cannot_be_written(tmp_path, capsys, monkeypatch, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    msg = fails(capsys, "train", "--config", DEMO, "--workdir", str(blocker / "run"))
    assert f"{blocker / 'run'}: the workdir cannot be written" in msg and "another --workdir" in msg

    # A read-only workdir holding a run: stopped before anything is restored ("resuming") or written.
    from pix2pixhd_jax.runtime import loop

    workdir = tmp_path / "old_run"
    make_model_workdir(workdir)
    before = sorted(p.name for p in workdir.rglob("*"))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(loop.tempfile, "NamedTemporaryFile", read_only)
    with caplog.at_level(logging.INFO):
        msg = fails(capsys, "train", "--config", DEMO, "--workdir", str(workdir))
    assert "the workdir cannot be written (Permission denied)" in msg and "Make it writable" in msg
    assert not [r for r in caplog.records if "resuming" in r.getMessage()]
    assert sorted(p.name for p in workdir.rglob("*")) == before


def test_config_variants_and_overrides(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    msg = fails(capsys, "train", "--config", str(ROOT / "configs" / "ablation_synthetic.py") + ":nope", "--workdir",
                workdir)
    assert "ablation_synthetic.py:nope: not one of pix2pixhd" in msg and "segmenter" in msg
    msg = fails(capsys, "train", "--config", DEMO + ":big", "--workdir", workdir)
    assert "synthetic_demo.py has no variants; drop ':big'" in msg
    msg = fails(capsys, "train", "--config", DEMO, "--workdir", workdir, "--config.train=3")
    assert "train is a group of settings, not one" in msg and "--config.train.batch_size=..." in msg
    msg = fails(capsys, "train", "--config", DEMO, "--workdir", workdir, "--config.train.max_steps", "3")
    assert "write --config.train.max_steps=3" in msg
    msg = fails(capsys, "train", "--config", DEMO, "--workdir", workdir, "--config.train.max_steps")
    assert "write --config.train.max_steps=VALUE" in msg
    assert not (tmp_path / "run").exists()


def test_synthesize_with_ids_the_model_has_no_class_for(tmp_path, capsys):
    config, _ = make_model_workdir(tmp_path / "model")
    label = np.full((32, 64), 7, np.uint8)
    label[:8, :8] = 255
    (tmp_path / "maps").mkdir()
    Image.fromarray(label).save(tmp_path / "maps" / "scene.png")
    argv = ["synthesize", "--workdir", str(tmp_path / "model"), "--label", str(tmp_path / "maps"), "--out",
            str(tmp_path / "out"), "--resize", "none", "--quiet"]
    msg = fails(capsys, *argv)
    n = config.data.label_nc
    assert f"scene.png: label id 255 is out of range: the model was trained for {n} classes (ids 0..{n - 1})" in msg
    assert "64 pixels" in msg and "--unknown-label K" in msg and "--config" not in msg
    assert "not one of the model's classes" in fails(capsys, *argv, "--unknown-label", str(n))
    assert cli.main([*argv, "--unknown-label", "0"]) == 0
    photo = np.asarray(Image.open(tmp_path / "out" / "scene_synthesized.png"))
    assert photo.shape == (32, 64, 3)


def test_evaluate_says_how_to_make_the_judge_and_where_fid_weights_go(tmp_path, capsys):
    from pix2pixhd_jax.weights.inception import missing_weights_message

    make_model_workdir(tmp_path / "model")
    msg = fails(capsys, "evaluate", "--workdir", str(tmp_path / "model"), "--segmenter", str(tmp_path / "none"),
                "--quiet")
    assert "no segmenter here" in msg and "train-segmenter --config CONFIG --workdir" in msg
    assert "configs/ablation_synthetic.py:segmenter" in msg
    hint = missing_weights_message()
    assert "--inception FILE" in hint and "pix2pixhd-jax convert-inception" in hint
    readme = (ROOT / "README.md").read_text()
    assert "pix2pixhd-jax convert-inception" in readme and "--inception" in readme


def test_few_samples_for_a_frechet_distance_are_explained_once(caplog):
    from pix2pixhd_jax.evaluation import metrics

    was = metrics._warned_few_samples
    metrics._warned_few_samples = False
    try:
        rng = np.random.default_rng(0)
        a = metrics.FeatureStats().update(rng.normal(size=(3, 8)))
        b = metrics.FeatureStats().update(rng.normal(size=(3, 8)) + 1)
        with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
            warnings.simplefilter("error")  # scipy's LinAlgWarning would fail here
            first = metrics.frechet_distance_of(a, b)
            metrics.frechet_distance_of(a, b)
        notes = [r.getMessage() for r in caplog.records if "Frechet distance from 3 feature vectors" in r.getMessage()]
        assert len(notes) == 1 and "8 dimensions" in notes[0]
        assert np.isfinite(first) and first > 0
    finally:
        metrics._warned_few_samples = was


def test_a_resumed_log_keeps_one_record_per_step(tmp_path):
    from pix2pixhd_jax.runtime.metric_writer import MetricWriter

    logdir = tmp_path / "tensorboard"
    writer = MetricWriter(str(logdir))
    for step in range(1, 8):
        writer.scalars(step, {"loss": step})
    writer.close()
    with open(logdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # the kill landed mid-line
    writer = MetricWriter(str(logdir), resume_step=4)
    for step in range(5, 7):
        writer.scalars(step, {"loss": 10 * step})
    writer.close()
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 50), (6, 60)]


def test_tensorboard_files_are_written_without_loading_torch(tmp_path):
    # tensorboardX's package imports torch where it is installed (seconds of every training
    # process's start); the writer hides it, and torch still imports afterwards.
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: there is nothing to hide")
    code = ("import sys\n"
            "import numpy as np\n"
            "from pix2pixhd_jax.runtime.metric_writer import MetricWriter\n"
            f"w = MetricWriter({str(tmp_path)!r})\n"
            "w.scalars(3, {'loss': 1.5})\n"
            "w.image(3, 'grid', np.full((4, 6, 3), 200, np.uint8))\n"
            "w.close()\n"
            "print('torch' in sys.modules)\n"
            "import torch\n"
            "print(torch.zeros(2).shape[0])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "2"]
    (path,) = tmp_path.glob("events*")
    values = [(event.step, v.tag, v.simple_value, v.image.width, v.image.height)
              for event in read_events(path) for v in event.summary.value]
    assert values == [(3, "loss", 1.5, 0, 0), (3, "grid", 0.0, 6, 4)]


def test_train_segmenter_refuses_a_batch_below_one(tmp_path, capsys):
    make_aligned(tmp_path / "data", "train", n=2, w=64, h=32)
    msg = fails(capsys, "train-segmenter", "--config", str(ROOT / "configs" / "ablation_synthetic.py") + ":segmenter",
                "--workdir", str(tmp_path / "seg"), f"--config.data.dataroot={tmp_path / 'data'}",
                "--config.segmenter.batch_size=0")
    assert "segmenter.batch_size=0: the global batch must be at least 1" in msg
