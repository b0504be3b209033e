"""Shared test helpers: small hand-made datasets and the real Cityscapes samples."""

import importlib.util
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The tests' programs use lax's convolutions, the program accelerators run, which XLA:CPU also
# compiles in about half the time of the CPU path's rewrites. The CPU path has its own tests
# (tests/test_networks.py, test_step_formulation.py, test_lowering.py), which turn it on;
# PIX2PIXHD_CPU_CONV=1 runs the whole suite on it.
os.environ.setdefault("PIX2PIXHD_CPU_CONV", "0")
# XLA's quick optimisation for the tests' programs, in these processes and in the CLI processes
# the tests start (cli_env): the tests check behaviour, not speed, and XLA:CPU compiles the tiny
# models' programs two to three times faster (a tiny OASIS model's init, 22 s -> 7 s). XLA:CPU's
# older element-wise code emitters compile a tiny model's train step in half the time of its
# fusion emitters again (3.2 s -> 1.4 s), for the same values to float tolerance.
TEST_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
                  "--xla_cpu_use_fusion_emitters=false")


def with_test_xla_flags(flags: str) -> str:
    return " ".join([f for f in TEST_XLA_FLAGS if f not in flags.split()] + [flags]).strip()


os.environ["XLA_FLAGS"] = with_test_xla_flags(os.environ.get("XLA_FLAGS", ""))
# The tests run on the CPU. With libtpu installed (for the TPU compile tests) JAX would otherwise
# probe for a TPU in every process, print libtpu's start-up lines and hold its lockfile.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the run's processes (the xdist workers inherit the
# controller's environment): a program several tests compile, such as the tiny OASIS step, is
# compiled once. Set before anything imports jax, which reads it at import.
if "PIX2PIXHD_TEST_JAX_CACHE" not in os.environ:
    os.environ["PIX2PIXHD_TEST_JAX_CACHE"] = tempfile.mkdtemp(prefix="pix2pixhd_jax_tests_")
    _OWN_CACHE = os.environ["PIX2PIXHD_TEST_JAX_CACHE"]
else:
    _OWN_CACHE = None
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["PIX2PIXHD_TEST_JAX_CACHE"])
# A size limit turns on JAX's file lock around the cache's reads and writes (JAX writes an entry
# in place): processes sharing the cache never read an entry another is still writing.
if importlib.util.find_spec("filelock") is not None:
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(64 << 30))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CITYSCAPES_SAMPLES = ROOT.parent / "shared" / "data" / "cityscapes_samples"

from pix2pixhd_jax.data.synthetic.blocks import block_maps, grid_shape  # noqa: E402  (this tree's package)

def pytest_unconfigure(config):
    if _OWN_CACHE:  # the process that made the cache: the controller, or a run without xdist
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """The slow tests first: pytest-xdist hands tests out in this order, so the longest ones do
    not start last and leave one worker running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest's own summary (which on CI prints each failure's whole message, a subprocess's
    log or a store's spec, so a log's last lines may not name the test): one line per failed
    test, its name and the first line of why, just above the counts."""
    result = yield
    failed = terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
    if failed:
        terminalreporter.write_sep("-", f"{len(failed)} failed, by name")
        for report in failed:
            crash = getattr(report.longrepr, "reprcrash", None)
            why = (crash.message.strip().splitlines() or [""])[0][:160] if crash else ""
            terminalreporter.write_line(f"{report.nodeid} ({report.when}): {why}")
    return result


# Distinct photo colours per label id, so a photo pixel tells which label it came from.
COLOURS = np.random.default_rng(7).integers(0, 256, size=(256, 3)).astype(np.uint8)


def block_example(w=128, h=64, block=16, seed=0, label_nc=35):
    """Label blocks with random ids, instance ids label*1000+block index, photo coloured by label."""
    grid = np.random.default_rng(seed).integers(1, min(label_nc, 34), size=grid_shape(h, w, block))
    label, inst = block_maps(grid, h, w, block)
    return label.astype(np.uint8), inst.astype(np.uint16), COLOURS[label]


def save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def make_aligned(root, phase="train", n=6, w=128, h=64, seed=0, names=None):
    """The reference's aligned folders with n block examples; returns the examples."""
    out = []
    for i in range(n):
        name = names[i] if names else f"scene_{i:03d}"
        label, inst, photo = block_example(w, h, seed=seed * 1000 + i)
        save(f"{root}/{phase}_label/{name}.png", label)
        save(f"{root}/{phase}_inst/{name}.png", inst)
        save(f"{root}/{phase}_img/{name}.png", photo)
        out.append((name, label, inst, photo))
    return out


# The tests' base: synthetic_demo with whole-image scale_width, no L1 term and the small G the
# tests were written against (the demo itself trains on crops with an L1 term).
TEST_BASE = ("data.resize_or_crop=scale_width", "data.fine_size=256", "loss.lambda_l1=0.0", "model.ngf=8",
             "train.lr=0.0004", "train.niter=4", "train.niter_decay=2")


def load_test_config(*overrides):
    from pix2pixhd_jax.config_loading import load_config

    return load_config(str(ROOT / "configs" / "synthetic_demo.py"), list(TEST_BASE) + list(overrides))


def cli_env(xla_flags: str = "", **extra) -> dict:
    """The environment of a CLI process a test starts: JAX on the CPU with the run's compilation
    cache (every program cached: a CLI process compiles what the tests' other processes did, the
    same tiny models), the tests' XLA flags and `xla_flags`, this tree first on the path, and
    `extra`."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = with_test_xla_flags(xla_flags or env.get("XLA_FLAGS", ""))
    env["JAX_COMPILATION_CACHE_DIR"] = os.environ["PIX2PIXHD_TEST_JAX_CACHE"]
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def read_events(path):
    """The Event protos of a TensorBoard events file (TFRecord framing: length, its CRC, the
    Event, its CRC), without TensorFlow."""
    from tensorboardX.proto import event_pb2

    raw, i = Path(path).read_bytes(), 0
    while i < len(raw):
        (length,) = struct.unpack("<Q", raw[i:i + 8])
        yield event_pb2.Event.FromString(raw[i + 12:i + 12 + length])
        i += 12 + length + 4


@pytest.fixture
def cityscapes_samples():
    if not (CITYSCAPES_SAMPLES / "train_label").is_dir():
        pytest.skip(f"the real Cityscapes samples are not at {CITYSCAPES_SAMPLES} (they live in ../shared)")
    return CITYSCAPES_SAMPLES


# A pix2pixHD G with the feature encoder, as small as each path allows (the model tests of
# synthesis, features and editing share it).
TINY_FEATURES = ("model.instance_feat=True", "model.ngf=4", "model.n_downsample_global=2", "model.n_blocks_global=1",
                 "model.nef=4", "model.n_downsample_E=2", "model.ndf=4", "model.num_D=1", "model.n_layers_D=1")


def raw_state(workdir, step):
    """The whole saved train state (params, optimizer states, rng, step) as numpy."""
    import jax
    import orbax.checkpoint as ocp

    from pix2pixhd_jax import checkpoint

    with checkpoint.manager(str(workdir)) as mngr:
        restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.tree_util.tree_map(np.asarray, restored["state"])


def make_model_workdir(workdir, *overrides, seed=0):
    """A workdir holding config.json and an 'imported' checkpoint of a random tiny model
    (TINY_FEATURES unless overridden); returns (config, variables)."""
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.models.pix2pixhd import Networks
    from pix2pixhd_jax.weights.filled import random_variables

    config = load_test_config(*[f"--config.{o}" for o in TINY_FEATURES + tuple(overrides)])
    variables = random_variables(Networks(config), seed)
    checkpoint.save_models(str(workdir), 0, variables, config)
    return config, variables


# OASIS (a SPADE G with 3D noise, OASIS's D, a moving average of G) as small as its networks go:
# sizes multiples of 4.
TINY_OASIS = ("model.netG=spade", "model.netD=oasis", "data.use_instance=False", "model.ngf=4", "model.ndf=4",
              "model.num_res_blocks=2", "model.z_dim=4", "model.spade_hidden=8", "train.beta1=0.0",
              "train.ema_decay=0.9", "loss.no_vgg_loss=True", "loss.lambda_l1=0.0", "loss.lambda_labelmix=10.0")


def make_oasis_workdir(workdir, *overrides, steps=2):
    """A workdir holding config.json and the training state of a tiny OASIS model (TINY_OASIS unless
    overridden) after `steps` steps of its train step on random 32x32 batches, at a large lr so
    that the moving average of G draws other pictures than G; returns (config, state as numpy)."""
    import jax

    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.training.benchmark import random_batch
    from pix2pixhd_jax.training.train import TrainProgram

    config = load_test_config(*[f"--config.{o}" for o in TINY_OASIS + ("train.lr=0.01", "train.lr_D=0.01")
                                + tuple(overrides)])
    program = TrainProgram(config, (32, 32), steps_per_epoch=1000)
    state = jax.jit(program.init)(jax.random.PRNGKey(0))
    step = jax.jit(program.step)
    for i in range(steps):
        state = step(state, random_batch(config, 2, 32, 32, seed=i), {})[0]
    with checkpoint.train_manager(str(workdir), keep=1) as mngr:
        checkpoint.save_state(mngr, steps, state)
        mngr.wait_until_finished()
    checkpoint.write_config(str(workdir), config)
    return config, jax.tree_util.tree_map(np.asarray, state)
