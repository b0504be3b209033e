"""The training-loop skeleton: what every trainer of the project does around its jitted step.

A trainer (pix2pixHD's `train`, the evaluation segmenter's `train-segmenter`) calls `prepare`
before it builds anything (every process must run the same config: a process that differs
would otherwise fail alone and leave the others waiting in a collective), then describes its
job in a `Job`: how to initialise a state, the pure step, its batches and when to save.
`run` then, the same way for every job:

- restores the workdir's newest readable checkpoint of the job's item (runtime/resume.py: process
  0's view of the shared disk decides; an unreadable newer step is skipped, said so and set aside;
  one in an older layout goes through the job's conversion) or initialises the state under jit
  with its shardings, and only then writes config.json, so a checkpoint that fails to restore
  keeps the config it was made with;
- jits the step with the state's shardings, the batch split over the mesh's 'data' axis and
  the state donated;
- reads a step's metrics one step late, once the next step is dispatched, so the device does
  not wait for the host between steps; a step whose state is saved (periodically, on SIGTERM,
  at the end) is read first, so only a state whose own metrics are finite is saved, and a
  non-finite step n stops the run (NonFiniteLossError) before step n + 1's state is saved;
- writes scalars (with images/s and the epoch) to TensorBoard and metrics.jsonl, runs the job's
  periodic evaluations (their scalars too), shows a progress bar, and on SIGTERM (a preempted
  job) saves the current step and exits with 143.
"""

import collections
import dataclasses
import logging
import os
import signal
import tempfile
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError, NonFiniteLossError
from pix2pixhd_jax.runtime import distributed, host_memory, resume, sharding
from pix2pixhd_jax.runtime.metric_writer import MetricWriter

SIGTERM_EXIT = 143


@dataclasses.dataclass
class Job:
    """One trainer's part of a run.

    `step(state, batch, *extra_args) -> (state, metrics)`, or `(state, metrics, outputs)` with
    `has_outputs` (outputs sharded like the batch, e.g. the generated images for sample grids).
    `batches(start_step)` yields this process's host batches from `start_step` on; `batch_keys`
    are the arrays of a host batch the step reads.
    """

    name: str
    item: str  # the checkpoint item the state is saved under
    seed: int
    init: Callable[[Any], Any]  # rng -> a fresh state (pure: it is jitted with the state's shardings)
    step: Callable
    batches: Callable[[int], Iterable[dict]]
    batch_keys: Sequence[str]
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    save_due: Callable[[int], bool]
    print_freq: int
    keep_checkpoints: int
    fix_hint: str  # what to change when a loss is not finite
    finite_keys: Sequence[str] = ("loss",)  # metrics whose names start so must be finite
    shard_params: bool = False
    extra_args: tuple = ()  # the step's further arguments, replicated (e.g. VGG19's weights)
    has_outputs: bool = False
    after_init: Optional[Callable[[Any], Any]] = None  # fresh state -> state (initial weights)
    # (workdir, step, the state's shapes) -> that step's checkpoint converted from an older layout
    # (host arrays), or None when it is in the current one.
    convert_old: Optional[Callable[[str, int, Any], Any]] = None
    # (every, fn(step, state) -> scalars): run at every `every`-th step and the last, on every
    # process, after the step's own metrics are read; its scalars go to TensorBoard and metrics.jsonl.
    periodic: Sequence[tuple] = ()
    on_step: Optional[Callable] = None  # (step, host metrics, outputs, host batch, writer) once read
    postfix: Callable[[dict], dict] = lambda metrics: {}  # progress-bar fields from host metrics


@dataclasses.dataclass
class Result:
    state: Any
    step: int


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


def run(job: Job, config, workdir: str, mesh, progress: bool = True) -> Result:
    """Train `job` in `workdir` (made by `prepare`) on `mesh` to job.total_steps; returns the
    final state (on device) and step."""
    workdir = os.path.abspath(workdir)
    is_main = jax.process_index() == 0

    rng = jax.random.PRNGKey(job.seed)
    shapes = jax.eval_shape(job.init, rng)
    state_sharding = sharding.state_shardings(shapes, mesh, job.shard_params)
    abstract = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                      shapes, state_sharding)
    convert = None if job.convert_old is None else (lambda where, at: job.convert_old(where, at, shapes))
    state, start = resume.restore_newest(workdir, job.item, abstract, convert)
    if state is None:
        start = 0
        state = jax.jit(job.init, out_shardings=state_sharding)(rng)
        if job.after_init is not None:
            state = jax.device_put(job.after_init(state), state_sharding)
    if is_main:
        checkpoint.write_config(workdir, config)
    # Made after the restore, which may have set unreadable steps aside: the manager counts only the others.
    mngr = checkpoint.train_manager(workdir, job.keep_checkpoints)

    extra_args = jax.device_put(job.extra_args, sharding.replicated(mesh))
    step_fn = jit_step(job.step, mesh, state_sharding, len(extra_args), job.has_outputs)

    writer = MetricWriter(os.path.join(workdir, "tensorboard"), enabled=is_main, resume_step=start)
    bar = tqdm(total=job.total_steps, initial=start, disable=not (progress and is_main), unit="step",
               dynamic_ncols=True, desc=job.name)
    last_saved = start if start else None
    tick, tick_step = time.time(), start
    step = start

    def save(at):
        nonlocal last_saved
        if last_saved != at:
            checkpoint.save_state(mngr, at, state, job.item)
            last_saved = at

    def finish(done):
        """Read a dispatched step's metrics (waiting for that step only): the non-finite stop,
        the progress bar, the scalars, then the job's own use of them."""
        nonlocal tick, tick_step
        at, metrics, outputs, host_batch = done
        metrics = jax.device_get(metrics)
        checked = {k: float(v) for k, v in metrics.items() if k.startswith(tuple(job.finite_keys))}
        if not all(np.isfinite(v) for v in checked.values()):
            mngr.wait_until_finished()
            where = checkpoint.checkpoint_dir(workdir)
            kept = (f"The last good checkpoint is kept in {where} (step {last_saved})" if last_saved is not None
                    else f"No checkpoint was saved in {where} before it")
            raise NonFiniteLossError(f"non-finite loss at step {at}: {checked}. {kept}; {job.fix_hint}")
        epoch = (at - 1) // job.steps_per_epoch
        bar.update(1)
        bar.set_postfix(epoch=epoch, **job.postfix(metrics), refresh=False)
        if at % job.print_freq == 0 or at == job.total_steps:
            now = time.time()
            rate = (at - tick_step) * job.global_batch / max(now - tick, 1e-9)
            writer.scalars(at, dict(metrics, images_per_second=rate, epoch=epoch))
            tick, tick_step = now, at
        if job.on_step is not None:
            job.on_step(at, metrics, outputs, host_batch, writer)

    pending, compiled = None, None
    depth = int(config.data.device_prefetch)
    with Preemption() as preemption:
        for host_batch, batch in device_batches(job.batches(start), mesh, set(job.batch_keys), depth):
            if step >= job.total_steps:
                break
            if compiled is None:
                # Compiled ahead so that no process enters the step's collectives while another
                # is still compiling it.
                compiled = step_fn.lower(state, batch, *extra_args).compile()
                distributed.wait_for_all(f"{job.name}/compiled/{step}")
            state, metrics, *outputs = compiled(state, batch, *extra_args)
            step += 1
            if pending is not None:
                finish(pending)
            pending = (step, metrics, outputs[0] if outputs else None, host_batch)
            save_due, stop = job.save_due(step), preemption.check(step)
            periodic = [fn for every, fn in job.periodic if step % every == 0 or step >= job.total_steps]
            if save_due or stop or periodic or step >= job.total_steps:
                finish(pending)
                pending = None
            for fn in periodic:
                scores = fn(step, state)
                writer.scalars(step, scores)
                writer.flush()
                if is_main:  # above the progress bar, which stays at the bottom
                    tqdm.write(f"{job.name} step {step}: " + ", ".join(f"{k} {float(v):.4g}" for k, v in scores.items()))
            if save_due:
                save(step)
            if stop:
                save(step)
                mngr.wait_until_finished()
                bar.close()
                logging.warning("SIGTERM: saved step %d in %s; run the same command to resume.", step,
                                checkpoint.checkpoint_dir(workdir))
                writer.close()
                raise SystemExit(SIGTERM_EXIT)
            if step >= job.total_steps:
                break
    if pending is not None:  # the data ran out before total_steps
        finish(pending)
    save(step)
    mngr.wait_until_finished()
    mngr.close()
    bar.close()
    writer.close()
    return Result(state, step)
