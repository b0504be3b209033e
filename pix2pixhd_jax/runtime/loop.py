"""The parts every trainer of the project shares, as plain functions and objects: pix2pixHD's
`train` (training/train.py) and the evaluation segmenter's `train-segmenter`
(evaluation/segmenter.py) each write their loop top to bottom with them, in marked sections
(big_vision's train.py is the model):

    mesh = sharding.make_mesh(devices)
    workdir = loop.prepare(config, workdir, mesh, global_batch)        # same config everywhere, writable
    state, start, shardings = loop.restore_or_init(workdir, item, init, seed, mesh)
    loop.write_config(workdir, config)                                 # after the restore
    step_fn = loop.compiled_on_first_call(loop.jit_step(step, mesh, shardings, ...), name)
    out, late = loop.Outputs(workdir, name, item, start, total, ...), loop.Late()
    with loop.Preemption() as preemption:
        for step, (host_batch, batch) in zip(range(start + 1, total + 1), loop.device_batches(...)):
            state, metrics = step_fn(state, batch)
            save, stop = save_due(step), preemption.check(step)
            for at, metrics in late.swap((step, metrics), now=save or stop or step == total):
                out.read(at, metrics, ...)                                   # one step late
            out.save_if_due(step, state, due=save, preempted=stop)
    ... late.drain() ...; out.finish(step, state)

What they keep, for every trainer:

- `restore_or_init`: the workdir's newest readable checkpoint of the item (runtime/resume.py:
  process 0's view of the shared disk decides; an unreadable newer step is skipped, said so and
  set aside; one in an older layout goes through the trainer's conversion) or a fresh state,
  initialised under jit with its shardings; config.json is written only after it, so a
  checkpoint that fails to restore keeps the config it was made with. The data resume at the
  step's position (the pipelines' `iterate(start)`).
- `jit_step`: the step jitted with the state's shardings, the batch split over the mesh's
  'data' axis and the state donated (`benchmark --topology` compiles the same);
  `compiled_on_first_call` compiles it ahead of its first call, on every process, so that no
  process enters the step's collectives while another is still compiling it.
- `device_batches`: host batches put on the devices ahead of the step that reads them.
- `Late`: a step's metrics are read one step late, once the next step is dispatched, so the
  device does not wait for the host between steps; a step whose state is used (saved,
  evaluated, the last) is read at once, so only a state whose own metrics are finite is saved.
- `Outputs.read`: a non-finite step n stops the run (NonFiniteLossError, naming the last good
  checkpoint) before step n + 1's state is saved; scalars (with images/s and the epoch) go to
  TensorBoard and metrics.jsonl (a resumed run's later records dropped, runtime/metric_writer.py),
  the progress bar to the console; `Outputs.scores`: evaluation scores, written and printed.
- `Outputs.save_if_due`: periodic asynchronous saves; on SIGTERM (`Preemption`, a preempted job)
  the current step is saved and the process exits with 143.
"""

import collections
import logging
import os
import signal
import tempfile
import time
from typing import Iterable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError, NonFiniteLossError
from pix2pixhd_jax.runtime import distributed, host_memory, resume, sharding
from pix2pixhd_jax.runtime.metric_writer import MetricWriter

SIGTERM_EXIT = 143


class Preemption:
    """SIGTERM (a preempted job) asks the loop to save and stop after the current step.

    With many processes JAX's preemption service catches the signal on whichever host
    gets it and agrees a step at which all processes save together (a save is collective)."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._multi = jax.process_count() > 1

    def check(self, step):
        if self._multi:
            self.requested = self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def __enter__(self):
        if self._multi:
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def prepare(config, workdir: str, mesh, global_batch: int, batch_setting: str = "train.batch_size") -> str:
    """The start of every run: the same config on every process, a batch the mesh divides,
    the workdir made and writable; returns the workdir's absolute path."""
    distributed.check_same_config(config)
    sharding.check_batch(global_batch, mesh, batch_setting)
    host_memory.keep_freed_memory()
    workdir = os.path.abspath(workdir)
    check_writable(workdir)
    return workdir


def check_writable(workdir: str):
    """Make the workdir, and find out now (not after a resume or an hour of training) when
    nothing can be written there."""
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_check_"):
            pass
    except OSError as e:
        raise CheckpointError(f"{workdir}: the workdir cannot be written ({e.strerror or e}); checkpoints, "
                              "config.json and logs go there. Make it writable, or give another --workdir "
                              "(copy the old one first to resume from its checkpoints).") from None


def jit_step(step, mesh, state_sharding, n_extra: int, has_outputs: bool):
    """The step as every run jits it (and `benchmark --topology` compiles it): the state with its
    shardings, donated; the batch (and the outputs) split over the mesh's 'data' axis; the extra
    arguments and the metrics replicated."""
    batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    out_shardings = (state_sharding, replicated) + ((batch_sharding,) if has_outputs else ())
    return jax.jit(step, in_shardings=(state_sharding, batch_sharding) + (replicated,) * n_extra,
                   out_shardings=out_shardings, donate_argnums=(0,))


def device_batches(host_batches: Iterable[dict], mesh, keys, depth: int = 2):
    """(host batch, the batch on the mesh) pairs, each put on the devices `depth` batches ahead of
    its use: the copies are asynchronous, so batch N+1's (and N+2's) transfer runs while step N
    does, and the step finds its inputs there when it starts (depth 0: put when used)."""
    ahead = collections.deque()
    for host_batch in host_batches:
        ahead.append((host_batch, sharding.global_batch(host_batch, mesh, keys)))
        if len(ahead) > depth:
            yield ahead.popleft()
    while ahead:
        yield ahead.popleft()


def restore_or_init(workdir: str, item: str, init, seed: int, mesh, shard_params: bool = False, convert_old=None):
    """(state, start step, the state's shardings): the newest readable checkpoint of `item` in
    `workdir` (made by `prepare`), or `init(rng)` (pure: jitted with the state's shardings) at
    step 0. convert_old(workdir, step, the state's shapes): that step's state converted from an
    older layout (host arrays), or None when it is in today's."""
    rng = jax.random.PRNGKey(seed)
    shapes = jax.eval_shape(init, rng)
    shardings = sharding.state_shardings(shapes, mesh, shard_params)
    abstract = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                      shapes, shardings)
    convert = None if convert_old is None else (lambda where, at: convert_old(where, at, shapes))
    state, start = resume.restore_newest(workdir, item, abstract, convert)
    if state is None:
        return jax.jit(init, out_shardings=shardings)(rng), 0, shardings
    return state, start, shardings


def write_config(workdir: str, config):
    """config.json (process 0), once the state is restored or made."""
    if jax.process_index() == 0:
        checkpoint.write_config(workdir, config)


def compiled_on_first_call(step_fn, name: str):
    """`step_fn` (jitted) as a function that compiles it for its first call's arguments and waits
    for every process to have done so before running it."""
    compiled = None

    def run(*args):
        nonlocal compiled
        if compiled is None:
            compiled = step_fn.lower(*args).compile()
            distributed.wait_for_all(f"{name}/compiled")
        return compiled(*args)

    return run


class Late:
    """Holds one dispatched step's results until the next step is dispatched."""

    def __init__(self):
        self._held = None

    def swap(self, results, now: bool = False) -> list:
        """The held step's results, to read now, with `results` held in their place; with `now`
        (this step's state is about to be used), `results` as well."""
        out = [] if self._held is None else [self._held]
        self._held = results
        if now:
            out.append(results)
            self._held = None
        return out

    def drain(self) -> list:
        """What is held (the data ran out before the last step)."""
        out = [] if self._held is None else [self._held]
        self._held = None
        return out


class Outputs:
    """What a run writes: checkpoints of `item` (asynchronous, `keep` newest), the scalars every
    `print_freq` steps and at the last (TensorBoard and metrics.jsonl, process 0) and the
    progress bar."""

    def __init__(self, workdir: str, name: str, item: str, start: int, total: int, steps_per_epoch: int,
                 global_batch: int, print_freq: int, keep: int, progress: bool = True):
        self.workdir, self.name, self.item = workdir, name, item
        self.total, self.steps_per_epoch, self.global_batch, self.print_freq = total, steps_per_epoch, global_batch, print_freq
        self.is_main = jax.process_index() == 0
        # Made after the restore, which may have set unreadable steps aside: the manager counts only the others.
        self.manager = checkpoint.train_manager(workdir, keep)
        self.last_saved = start if start else None
        self.writer = MetricWriter(os.path.join(workdir, "tensorboard"), enabled=self.is_main, resume_step=start)
        self.bar = tqdm(total=total, initial=start, disable=not (progress and self.is_main), unit="step",
                        dynamic_ncols=True, desc=name)
        self._tick, self._tick_step = time.time(), start

    def read(self, at: int, metrics, finite: Sequence[str] = ("loss",), fix_hint: str = "", show=None) -> dict:
        """Step `at`'s metrics on the host, after that step only: the metrics whose names start
        with one of `finite` must be finite (else NonFiniteLossError, with `fix_hint`); the
        progress bar (the epoch, and `show`: {bar field: metric}) and, every print_freq steps and
        at the last, the scalars."""
        metrics = jax.device_get(metrics)
        checked = {k: float(v) for k, v in metrics.items() if k.startswith(tuple(finite))}
        if not all(np.isfinite(v) for v in checked.values()):
            self.manager.wait_until_finished()
            where = checkpoint.checkpoint_dir(self.workdir)
            kept = (f"The last good checkpoint is kept in {where} (step {self.last_saved})" if self.last_saved is not None
                    else f"No checkpoint was saved in {where} before it")
            raise NonFiniteLossError(f"non-finite loss at step {at}: {checked}. {kept}; {fix_hint}")
        epoch = (at - 1) // self.steps_per_epoch
        self.bar.update(1)
        self.bar.set_postfix(epoch=epoch, **{k: f"{float(metrics[m]):.3f}" for k, m in (show or {}).items()},
                             refresh=False)
        if at % self.print_freq == 0 or at == self.total:
            now = time.time()
            rate = (at - self._tick_step) * self.global_batch / max(now - self._tick, 1e-9)
            self.writer.scalars(at, dict(metrics, images_per_second=rate, epoch=epoch))
            self._tick, self._tick_step = now, at
        return metrics

    def scores(self, step: int, scores: dict):
        """An evaluation's scores: to TensorBoard and metrics.jsonl, and above the progress bar."""
        self.writer.scalars(step, scores)
        self.writer.flush()
        if self.is_main:
            tqdm.write(f"{self.name} step {step}: " + ", ".join(f"{k} {float(v):.4g}" for k, v in scores.items()))

    def save(self, step: int, state):
        """Save `state` at `step` (asynchronously), once."""
        if self.last_saved != step:
            checkpoint.save_state(self.manager, step, state, self.item)
            self.last_saved = step

    def save_if_due(self, step: int, state, due: bool, preempted: bool):
        """The save a step may owe: when `due`; on SIGTERM the save, then the exit (143)."""
        if due or preempted:
            self.save(step, state)
        if preempted:
            self.manager.wait_until_finished()
            self.bar.close()
            logging.warning("SIGTERM: saved step %d in %s; run the same command to resume.", step,
                            checkpoint.checkpoint_dir(self.workdir))
            self.writer.close()
            raise SystemExit(SIGTERM_EXIT)

    def finish(self, step: int, state):
        """The last save, written through, and everything closed."""
        self.save(step, state)
        self.manager.wait_until_finished()
        self.manager.close()
        self.bar.close()
        self.writer.close()
