"""What a user meets when a file is damaged or a flag is wrong, through the real command: exit
status 2 and one line naming the file or value and the fix, never a traceback; training over a
damaged newest checkpoint goes back to the newest one that reads; inference reads G only, so
damage in D's or the optimizer's arrays does not stop it; one log record per step after any
kill; a console without the libraries' start-up lines.

The CLI cases share one tiny trained workdir (checkpoints at steps 3, 6 and 9) and one
persistent compilation cache, and damage copies of it the three ways a disk or a copy does:
a data file cut short, Orbax's _METADATA cut to 10 bytes, config.json cut to 300 bytes (and,
for training, an array's bytes overwritten, which only the restore itself finds).
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli_env, read_events

# One xdist worker builds the trained run once for all the tests here.
pytestmark = pytest.mark.xdist_group("trust")

CONFIG = str(ROOT / "configs" / "synthetic_demo.py")
TINY = ["--config.data.load_size=64", "--config.model.ngf=4", "--config.model.ndf=4",
        "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1", "--config.model.n_layers_D=1",
        "--config.train.batch_size=2", "--config.train.print_freq=1", "--config.train.display_freq=3",
        "--config.train.save_latest_freq=3"]
G_PARTS = ("g_params", "g_stats")
LIBRARY_NOISE = ("InitGoogle", "TPU_WORKER_HOSTNAMES", "host bounds", "oneDNN", "absl::InitializeLog",
                 "Optimization loop failed", "Unable to initialize backend")


@pytest.fixture(scope="module")
def env():
    env = cli_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default is under test
    return env


def tpu_chips() -> int:
    from jax._src import hardware_utils

    return hardware_utils.num_available_tpu_chips_and_device_id()[0]


def cli(env, *argv, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, "-m", "pix2pixhd_jax.cli", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env):
    """(workdir, data, label folder): 9 steps of a tiny model, checkpoints at 3, 6 and 9."""
    from pix2pixhd_jax.data import synthetic

    data = tmp_path_factory.mktemp("scenes")
    synthetic.write_dataset(data, 6, 2, 128, 64, seed=0, workers=1, progress=False)
    workdir = tmp_path_factory.mktemp("trained") / "run"
    proc = cli(env, "train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dataroot={data}", *TINY,
               "--config.train.max_steps=9", "--quiet", "--no-test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert steps(workdir) == [3, 6, 9]
    return workdir, data, data / "test_label"


def copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)
    return workdir


def steps(workdir):
    return sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())


def fails(proc, *named):
    """Exit 2, one line on stderr, starting 'error: ' and naming each of `named`; returns it."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for text in named:
        assert str(text) in lines[0], lines[0]
    return lines[0]


# ----- the three ways a checkpoint gets damaged ------------------------------------------


def values(workdir, step):
    """(top-level part, data file, offset, length) of every stored array chunk of step's state."""
    from pix2pixhd_jax import checkpoint

    item = workdir / "checkpoints" / str(step) / "state"
    return [(checkpoint.key_part(k), path, off, n) for k, path, off, n in checkpoint.stored_values(str(item)) if k]


def cut_g_file(workdir, step):
    """Cut the data file holding G's arrays to just before the first of them; returns it."""
    g = [v for v in values(workdir, step) if v[0] in G_PARTS]
    path = g[0][1]
    os.truncate(path, min(off for part, p, off, _ in g if p == path))
    return path


def cut_d_file(workdir, step):
    """Cut a data file short where only D's and the optimizers' arrays are lost (Orbax packs
    arrays into files as its writes go): the file with the most of them after G's last array,
    cut to half its size, but not into G's arrays and not past the last of D's; returns it."""
    rows = values(workdir, step)
    g_end = {}
    for part, path, off, n in rows:
        g_end[path] = max(g_end.get(path, 0), off + n if part in G_PARTS else 0)
    after_g = {p: [off for part, q, off, _ in rows if q == p and part not in G_PARTS and off >= g_end[p]]
               for p in g_end}
    path = max(after_g, key=lambda p: len(after_g[p]))
    assert after_g[path], "no data file holds D's arrays after G's"
    os.truncate(path, max(g_end[path], min(os.path.getsize(path) // 2, max(after_g[path]))))
    return path


def overwrite_d_array(workdir, step):
    """Zero the stored bytes of one of D's optimizer arrays: sizes stay, only the read finds it."""
    part, path, off, n = max((v for v in values(workdir, step) if v[0] == "d_opt"), key=lambda v: v[3])
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\0" * n)
    return path


def cut_metadata(workdir, step):
    path = workdir / "checkpoints" / str(step) / "state" / "_METADATA"
    os.truncate(path, 10)
    return path


def cut_config(workdir, step=None):
    path = workdir / "config.json"
    os.truncate(path, 300)
    return path


INFERENCE = {
    "synthesize": lambda w, labels, out: ["synthesize", "--workdir", w, "--label", labels, "--out", out, "--quiet"],
    "export": lambda w, labels, out: ["export", "--workdir", w, "--out", out, "--height", 64, "--width", 128],
    "serve": lambda w, labels, out: ["serve", "--workdir", w, "--port", 0, "--no-warmup"],
    "evaluate": lambda w, labels, out: ["evaluate", "--workdir", w, "--segmenter", out, "--quiet"],
}


@pytest.mark.slow
@pytest.mark.parametrize("damage, command", [
    (cut_g_file, "synthesize"), (cut_g_file, "export"), (cut_g_file, "serve"), (cut_g_file, "evaluate"),
    (cut_metadata, "serve"), (cut_config, "synthesize")])
def test_inference_over_a_damaged_checkpoint_names_the_file_and_the_fix(trained, env, tmp_path, damage, command):
    workdir = copy(trained, tmp_path)
    path = damage(workdir, 9)
    line = fails(cli(env, *INFERENCE[command](workdir, trained[2], tmp_path / "out")), path)
    if damage is cut_config:
        assert "copy it back from a backup" in line
    else:  # the older step that reads, and how to use it
        assert "Step 6 is whole" in line and f"move {workdir / 'checkpoints' / '9'} aside" in line
    assert steps(workdir) == [3, 6, 9]  # inference moves nothing


@pytest.mark.slow
def test_inference_reads_only_g_so_damage_in_d_does_not_stop_it(trained, env, tmp_path):
    """Also the quiet console: JAX picks its platform itself here (no JAX_PLATFORMS); on a machine
    with libtpu and no TPU chips its failed probe stays off the console unless --verbose."""
    workdir = copy(trained, tmp_path)
    overwrite_d_array(workdir, 9)
    cut_d_file(workdir, 9)
    own_choice = {k: v for k, v in env.items() if k != "JAX_PLATFORMS"}
    proc = cli(own_choice, *INFERENCE["synthesize"](workdir, trained[2], tmp_path / "photos"), "--inst",
               trained[1] / "test_inst")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "photos").glob("*.png"))) == 2
    assert proc.stderr.strip() == ""  # no library start-up lines, no warnings
    proc = cli(own_choice, *INFERENCE["export"](workdir, None, tmp_path / "exported"), "--verbose")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "exported" / "signature.json").read_text())["step"] == 9
    if importlib.util.find_spec("libtpu") is not None and not tpu_chips():
        assert "Unable to initialize backend 'tpu'" in proc.stderr  # shown with --verbose


# ----- training falls back to the newest step that reads ---------------------------------


def metrics(workdir):
    return [json.loads(line)["step"] for line in (workdir / "tensorboard" / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("damages", [{9: cut_d_file}, {9: cut_metadata, 6: overwrite_d_array}])
def test_train_resumes_from_the_newest_readable_step_and_deletes_nothing(trained, env, tmp_path, damages):
    """The newest step cut short or its _METADATA cut; in the second case step 6 also has an
    array overwritten in place, which only the restore finds (Orbax then names the item)."""
    workdir = copy(trained, tmp_path)
    named = {s: damage(workdir, s) for s, damage in damages.items()}
    named = {s: workdir / "checkpoints" / str(s) / "state" if damages[s] is overwrite_d_array else p
             for s, p in named.items()}
    resumed = min(damages) - 3
    proc = cli(env, "train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dataroot={trained[1]}", *TINY,
               "--config.train.max_steps=9", "--quiet", "--no-test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not [n for n in LIBRARY_NOISE if n in proc.stderr], proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "cannot be read" in ln]
    assert len(lines) == len(damages)
    for line, step in zip(lines, sorted(damages, reverse=True)):
        aside = workdir / "checkpoints" / f"{step}.unreadable"
        assert line.startswith(f"WARNING checkpoint step {step} cannot be read: {named[step]}")
        assert line.endswith(f"Skipped: moved to {aside} (nothing is deleted); resuming from step {resumed}.")
        if damages[step] is overwrite_d_array:  # why, from the bottom of Orbax's error: the array's read
            assert 'Error reading "d_opt' in line and "TensorStore details" not in line, line
        assert aside.is_dir()
    assert "trained to step 9" in proc.stdout
    # Nothing older is deleted; the skipped steps are trained and saved again, readable.
    assert steps(workdir) == [3, 6, 9]
    from pix2pixhd_jax import checkpoint

    for step in damages:
        checkpoint.check_step(str(workdir), step, "state")
    assert metrics(workdir) == list(range(1, 10))  # each step once: the resumed run's after the resumed step


@pytest.mark.slow
def test_train_over_a_damaged_config_json_checks_the_checkpoint_instead(trained, env, tmp_path):
    """Also a config copied outside the project (`cp configs/synthetic_demo.py ~/my_config.py`),
    which imports `from configs import default`, run from another folder."""
    workdir = copy(trained, tmp_path)
    path = cut_config(workdir)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(CONFIG, home / "my_config.py")
    # As an installed package: pix2pixhd_jax importable, the project's folder (and its configs/) not on the path.
    installed = tmp_path / "site-packages"
    installed.mkdir()
    (installed / "pix2pixhd_jax").symlink_to(ROOT / "pix2pixhd_jax")
    env = dict(env, PYTHONPATH=str(installed))
    base = ["train", "--config", home / "my_config.py", "--workdir", workdir, f"--config.data.dataroot={trained[1]}",
            *TINY, "--quiet", "--no-test"]
    # Another model's shapes are still refused, by the checkpoint's own metadata, and nothing is written.
    proc = cli(env, *base, "--config.model.ngf=8", "--config.train.max_steps=9", cwd=home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    warning, error = proc.stderr.strip().splitlines()
    assert warning.startswith(f"WARNING {path} is not valid JSON")
    assert error.startswith(f"error: {workdir / 'checkpoints' / '9'}: the checkpoint does not fit this config "
                            "(g_params/generator/")
    assert (workdir / "config.json").stat().st_size == 300
    proc = cli(env, *base, "--config.train.max_steps=9", cwd=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{path} is not valid JSON" in proc.stderr and "resuming checks the checkpoints' shapes" in proc.stderr
    assert json.loads(path.read_text())["model"]["ngf"] == 4  # written anew
    assert "trained to step 9" in proc.stdout
    (home / "broken.py").write_text("from configs import default\n\n\ndef get_config():\n    return default.nope()\n")
    fails(cli(env, "train", "--config", home / "broken.py", "--workdir", tmp_path / "w2", cwd=home),
          f"{home / 'broken.py'}:5", "nope")


@pytest.mark.slow
def test_no_readable_step_stops_without_moving_anything(trained, env, tmp_path):
    workdir = copy(trained, tmp_path)
    for step in (3, 6, 9):
        cut_metadata(workdir, step)
    line = fails(cli(env, "train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dataroot={trained[1]}",
                     *TINY, "--config.train.max_steps=9", "--quiet", "--no-test"),
                 workdir / "checkpoints", "no checkpoint can be read", "step 9:", "step 3:")
    assert "new --workdir" in line
    assert steps(workdir) == [3, 6, 9]


# ----- one record per step after any kill -------------------------------------------------


def events(logdir):
    """{(tag, step): count} as TensorBoard reads the event files: a later file's purge event
    (a SessionLog START at step s) discards the earlier files' records from step s on."""
    seen = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in read_events(path):
            if event.HasField("session_log") and event.session_log.status == event.session_log.START:
                seen = {k: v for k, v in seen.items() if k[1] < event.step}
            for value in event.summary.value:
                seen[(value.tag, event.step)] = seen.get((value.tag, event.step), 0) + 1
    return seen


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_logs_each_step_once(trained, env, tmp_path):
    """What a run killed before its first checkpoint leaves: config.json, metrics.jsonl and
    TensorBoard events of steps 1..9, no checkpoint. The new run starts at 0 and logs 1..3 once."""
    workdir = copy(trained, tmp_path)
    shutil.rmtree(workdir / "checkpoints")
    proc = cli(env, "train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dataroot={trained[1]}", *TINY,
               "--config.train.max_steps=3", "--quiet", "--no-test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metrics(workdir) == [1, 2, 3]
    scalars = {k: n for k, n in events(workdir / "tensorboard").items() if k[0] == "loss_G"}
    assert scalars == {("loss_G", 1): 1, ("loss_G", 2): 1, ("loss_G", 3): 1}


def test_tensorboard_is_on_disk_after_each_scalar_write(tmp_path):
    from pix2pixhd_jax.runtime.metric_writer import MetricWriter

    writer = MetricWriter(str(tmp_path), resume_step=0)
    writer.scalars(5, {"loss": 1.5})  # no flush, no close: what a kill right now leaves
    assert events(tmp_path) == {("loss", 5): 1}
    writer.close()


# ----- wrong flags and files --------------------------------------------------------------


@pytest.mark.slow
def test_wrong_flags_and_paths_are_one_line(trained, env, tmp_path):
    workdir, data, labels = trained
    a_file = tmp_path / "a_file.png"
    a_file.write_bytes(b"")
    for argv in (["synthesize", "--workdir", workdir, "--label", labels, "--out", a_file],
                 ["export", "--workdir", workdir, "--out", a_file, "--height", 64, "--width", 128],
                 ["make-instances", "--label", labels, "--out", a_file]):
        line = fails(cli(env, *argv), f"--out {a_file}: is a file")
        assert "give a folder" in line
    line = fails(cli(env, "serve", "--workdir", workdir, "--port", 70000), "--port", "70000")
    assert "0: any free one" in line
    # Colour label maps and empty folders: the fixes each command takes.
    colour = tmp_path / "colour"
    colour.mkdir()
    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[:, :64] = (128, 64, 128)
    Image.fromarray(rgb).save(colour / "scene.png")
    for argv in (["synthesize", "--workdir", workdir, "--label", colour, "--out", tmp_path / "o1"],
                 ["make-instances", "--label", colour, "--out", tmp_path / "o2"]):
        line = fails(cli(env, *argv), colour / "scene.png", "colour", "_gtFine_labelIds.png")
        assert "--config" not in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = fails(cli(env, "synthesize", "--workdir", workdir, "--label", empty, "--out", tmp_path / "o3"),
                 f"--label {empty}: no images found", "give --label the folder")
    assert "dataroot" not in line
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scene.png").write_bytes(b"not a png at all")
    line = fails(cli(env, "make-instances", "--label", broken, "--out", tmp_path / "o4"), broken / "scene.png")
    assert "BytesIO" not in line and "0x" not in line


# ----- the editor's instance ids fit its 16-bit download ------------------------------------


def test_the_editor_numbers_objects_of_classes_above_64_as_make_instances_does():
    from pix2pixhd_jax.data.instances import THINGS, instances_from_labels, png_numbering
    from pix2pixhd_jax.inference.editing import Scene

    label = np.zeros((8, 16), np.int32)
    label[:, :4] = 120  # an ADE20K thing class: class*1000+k would be 120000, past 16 bits
    ade = THINGS["ade20k"]
    assert 120 in ade and png_numbering(ade) == "image"
    inst = instances_from_labels(label, ade, png_numbering(ade))
    scene = Scene.from_arrays(label, inst, things=ade)
    assert sorted(np.unique(scene.inst).tolist()) == [0, 1000]
    mask = np.zeros_like(label, bool)
    mask[:, 8:12] = True
    scene, new = scene.paste(mask, 120)
    assert new == 1001 and scene.inst.max() <= np.iinfo(np.uint16).max
    scene, other = scene.paste(np.roll(mask, 4, axis=1), 7)  # any thing class takes the next free id
    assert other == 1002 if 7 in ade else other == 7
    # Cityscapes' classes keep class*1000+k.
    city = Scene.from_arrays(np.full((4, 4), 26, np.int32), np.full((4, 4), 26000, np.int32))
    assert city.new_instance_id(26) == 26001


def test_the_editor_refuses_to_download_ids_past_16_bits(tmp_path):
    from pix2pixhd_jax.errors import ApiError
    from pix2pixhd_jax.inference.editing import Scene
    from pix2pixhd_jax.serve import service as service_lib

    session = type("S", (), {})()
    session.lock = __import__("threading").Lock()
    session.editor = type("E", (), {"scene": Scene.from_arrays(np.full((2, 2), 3), np.full((2, 2), 70000))})()
    session.name = "scene"
    editor = service_lib.EditorService.__new__(service_lib.EditorService)
    editor.label_nc = 151
    editor._session = lambda body: session
    with pytest.raises(ApiError, match="instance id 70000 does not fit the 16-bit instance PNG"):
        editor.download("s", "inst")


# ----- the checks before a restore ----------------------------------------------------------


def test_check_step_names_the_file_and_reads_only_the_parts_asked_for(tmp_path):
    """An imported checkpoint (item 'models'): with D's bytes overwritten, a restore of G's part
    still works (D's are not read); a file cut short is found by its size before any array is
    read. (A whole restore that fails is run through the CLI in the training tests: in this
    process Orbax's failed read would leave a coroutine for a later test to report.)"""
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.errors import UnreadableCheckpointError

    rng = np.random.default_rng(0)  # incompressible: stored in data files, not inline in the index
    g, d = rng.normal(size=4096).astype(np.float32), rng.normal(size=4096).astype(np.float32)
    variables = {"generator": {"params": {"w": g}}, "discriminator": {"params": {"w": d}}}
    checkpoint.save_models(str(tmp_path), 5, variables)
    item = str(tmp_path / "checkpoints" / "5" / "models")
    rows = [(checkpoint.key_part(k), p, off, n) for k, p, off, n in checkpoint.stored_values(item) if k]
    assert {part for part, *_ in rows} == {"generator", "discriminator"}
    part, path, off, n = next(r for r in rows if r[0] == "discriminator")
    with open(path, "r+b") as f:  # D's bytes overwritten in place: only a read of D finds it
        f.seek(off)
        f.write(b"\0" * n)
    restored = checkpoint.restore_to_host(str(tmp_path), 5, "models", parts=("generator",))
    np.testing.assert_array_equal(restored["generator"]["params"]["w"], g)
    assert "discriminator" not in restored
    os.truncate(path, off)
    with pytest.raises(UnreadableCheckpointError, match=f"{path}: cut short: {off} bytes") as caught:
        checkpoint.check_step(str(tmp_path), 5, "models", parts=("discriminator",))
    assert caught.value.step == 5 and "discriminator.params.w" in str(caught.value)
    assert "No older step" in checkpoint.unreadable_message(str(tmp_path), caught.value, "models")


ABANDONED_READS = """
import gc, os, sys, time
import numpy as np
from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import UnreadableCheckpointError

workdir, default_hook = sys.argv[1], sys.argv[2] == "default"
rng = np.random.default_rng(0)  # a small array that fails first, 23 of 4 MB whose reads are then under way
mngr = checkpoint.train_manager(workdir, 3)
checkpoint.save_state(mngr, 1, {f"a{i:02d}": rng.normal(size=4096 if i == 0 else 1_000_000).astype(np.float32)
                                for i in range(24)})
mngr.wait_until_finished()
mngr.close()
key, path, offset, length = min(v for v in checkpoint.stored_values(os.path.join(workdir, "checkpoints/1/state")) if v[0])
with open(path, "r+b") as f:
    f.seek(offset)
    f.write(bytes(length))
try:
    checkpoint.restore(workdir, 1, "state")
except UnreadableCheckpointError as e:
    print("unreadable:", e)
if default_hook:
    sys.unraisablehook = sys.__unraisablehook__
for _ in range(3):  # the collector frees the abandoned reads at some later moment: here
    time.sleep(0.2)
    gc.collect()
"""


def test_a_failed_restore_leaves_no_tracebacks_for_later(tmp_path):
    """A restore that fails on one array abandons Orbax's other reads; a training that goes on
    from an older step must not print them later (a traceback per array with a store's spec)
    when the garbage collector closes them. Python's own hook, put back, shows what is dropped."""
    runs = {}
    for hook in ("ours", "default"):
        proc = subprocess.run([sys.executable, "-c", ABANDONED_READS, str(tmp_path / hook), hook], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'Error reading "a00/' in proc.stdout, proc.stdout
        runs[hook] = proc.stderr
    # The scenario does abandon reads: Python's hook prints their close or TensorStore's late wake-up.
    assert "Exception ignored in: <coroutine" in runs["default"] or "Event loop is closed" in runs["default"]
    assert "Exception ignored" not in runs["ours"] and "Traceback" not in runs["ours"], runs["ours"][-3000:]


def test_the_editor_binds_its_port_before_it_loads_the_model(tmp_path, monkeypatch):
    import socket

    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.serve import http

    loaded = []

    def from_workdir(*args, **kwargs):
        loaded.append(args)
        raise RuntimeError("the model was loaded")

    monkeypatch.setattr(http.Synthesizer, "from_workdir", from_workdir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{busy}"):
            http.create(str(tmp_path), "127.0.0.1", busy)
    with pytest.raises(UserError, match="--port 70000: not a TCP port"):
        http.create(str(tmp_path), "127.0.0.1", 70000)
    assert not loaded
