"""What reaches the console: the project's own lines, the libraries' start-up noise only with --verbose.

By default (`quiet`):
- Python logging shows the project's records from INFO up and other libraries' from WARNING up
  (jax2onnx logs its INFO lines on the root logger, so the filter goes by the file a record
  comes from; onnx_ir's warnings about value types it does not serialize are the converter's
  own business and need ERROR);
- TensorFlow's C++ log shows errors only (TF_CPP_MIN_LOG_LEVEL=2 unless set: tf.data's
  "Optimization loop failed: CANCELLED" when an input pipeline ends early, CPU feature notes),
  and its import, which prints oneDNN notices before that setting applies, runs with the C++
  stderr held (`import_tensorflow`);
- JAX's backend start-up (`start_backends`) runs with the C++ stderr held on a machine with
  libtpu installed but no TPU chips, where libtpu's failed probe prints TPU_WORKER_HOSTNAMES
  and InitGoogle lines. A TPU VM (TPU chips on its PCI bus, the test JAX itself uses) and an
  explicit JAX_PLATFORMS are left alone: the platform JAX picks never changes.
Held output is shown when the start-up fails. `--verbose` shows everything as it comes.
Only the C++ side is held: Python's own warnings and logs go to the console meanwhile.
"""

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile

import jax

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loggers whose warnings are converter chatter, shown from ERROR up unless --verbose.
CHATTY = ("onnx_ir",)
_state = {"verbose": True}


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _state["verbose"] or os.path.abspath(record.pathname).startswith(PACKAGE_DIR + os.sep):
            return True
        if record.name.split(".")[0] in CHATTY:
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING


def quiet(verbose: bool = False):
    """Set up the console for a command: call before TensorFlow or a JAX backend starts."""
    _state["verbose"] = verbose
    # force: absl (under orbax) installs a root handler at import when none exists yet.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ConsoleFilter())
    # Orbax and JAX log every checkpoint detail through absl at INFO.
    logging.getLogger("absl").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def held_stderr(hold: bool = True):
    """Hold what C/C++ code writes to the process's stderr (fd 2) for the duration, and show it
    only if the block raises. Python's sys.stderr and the logging handlers keep writing to the
    console meanwhile (through a copy of the real stderr)."""
    if not hold:
        yield
        return
    sys.stderr.flush()
    real_fd = os.dup(2)
    real = os.fdopen(os.dup(real_fd), "w", buffering=1)
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and h.stream in (sys.stderr, sys.__stderr__)]
    previous = sys.stderr
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        streams = [h.setStream(real) for h in handlers]
        sys.stderr = real
        try:
            yield
        except BaseException:
            os.dup2(real_fd, 2)
            held.seek(0)
            real.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr = previous
            for h, stream in zip(handlers, streams):
                h.setStream(stream)
            real.flush()
            os.dup2(real_fd, 2)
            os.close(real_fd)
            real.close()


def _tpu_probe_is_noise() -> bool:
    """libtpu is installed, JAX_PLATFORMS is not set, and the machine has no TPU chips: JAX will
    try the TPU backend, fail, and fall back, and libtpu prints its failed probe on the way."""
    if _state["verbose"] or os.environ.get("JAX_PLATFORMS") or "JAX_FORCE_TPU_INIT" in os.environ:
        return False
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        return False
    try:
        from jax._src import hardware_utils  # JAX's own PCI test for TPU chips (no public API)

        return hardware_utils.num_available_tpu_chips_and_device_id()[0] == 0
    except Exception:  # noqa: BLE001 - unknown JAX internals: show everything rather than guess
        return False


def start_backends():
    """Start JAX's backends now (after jax.distributed.initialize where a run has many processes),
    holding libtpu's start-up lines where they are noise."""
    with held_stderr(_tpu_probe_is_noise()):
        jax.devices()


def import_tensorflow():
    """Import TensorFlow (where installed) with its C++ start-up notices held unless --verbose;
    the input pipeline imports it again, at no cost."""
    if importlib.util.find_spec("tensorflow") is None:
        return
    with held_stderr(not _state["verbose"]):
        import tensorflow  # noqa: F401
