"""Which checkpoint a run resumes from: the newest one that reads.

Process 0 checks the steps on the shared disk, newest first (checkpoint.check_step: the files
Orbax reads parse, no array lies past the end of its file), and every process restores the
step it picks. A step that cannot be read (found by the check, or by the restore itself on any
process) is skipped with a warning that names it and why, and once an older step has been
restored the unreadable ones are renamed to `<step>.unreadable`: nothing is deleted, the run
can write those steps again, and Orbax's `keep_checkpoints` counts only readable steps, so the
older checkpoints stay while a newer one is unreadable. When no step reads, nothing is moved
and the run stops with an error (a fresh start over a damaged workdir is the user's choice).
"""

import logging
from typing import Any, Callable, Optional, Tuple

import jax
import numpy as np

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError, UnreadableCheckpointError
from pix2pixhd_jax.runtime import distributed


def _first_checked(workdir: str, item: str, candidates: list, skipped: list) -> int:
    """Process 0: the newest of `candidates` whose files check out (-1: none); the others are
    appended to `skipped` as (step, reason)."""
    for step in candidates:
        try:
            checkpoint.check_step(workdir, step, item)
        except UnreadableCheckpointError as e:
            skipped.append((step, str(e)))
            continue
        return step
    return -1


def restore_newest(workdir: str, item: str, abstract, convert: Optional[Callable[[str, int], Any]] = None
                   ) -> Tuple[Optional[Any], Optional[int]]:
    """(state, step) of the newest readable step of `item` restored into `abstract`, or
    (None, None) when the workdir holds no step. A step whose shapes do not fit `abstract` is a
    CheckpointError (an older step of the same workdir would not fit either). convert(workdir,
    step): the state of a step saved in an older layout as host arrays, None for today's layout."""
    is_main = jax.process_index() == 0
    candidates = checkpoint.steps(workdir, item) if is_main else []
    count = distributed.broadcast_from_main(len(candidates))
    if count == 0:
        return None, None
    skipped = []
    while True:
        step = _first_checked(workdir, item, candidates, skipped) if is_main else -1
        step = distributed.broadcast_from_main(step)
        if step < 0:
            break
        failure = ""
        try:
            converted = None if convert is None else convert(workdir, step)
            if converted is None:
                state = checkpoint.restore(workdir, step, item, abstract)
            else:
                state = jax.device_put(converted, jax.tree_util.tree_map(lambda a: a.sharding, abstract))
        except UnreadableCheckpointError as e:
            failure, state = str(e), None
        failed = int(distributed.sum_over_processes(np.asarray([1 if failure else 0]))[0])
        if not failed:
            break
        if is_main:
            skipped.append((step, failure or "another process could not read it"))
            candidates = [s for s in candidates if s < step]
    where = checkpoint.checkpoint_dir(workdir)
    if step < 0:
        reasons = "; ".join(f"step {s}: {r}" for s, r in skipped) if is_main else "see process 0's log"
        raise CheckpointError(f"{where}: no checkpoint can be read ({reasons}). Copy the workdir back from a "
                              "backup, move the damaged step folders aside to start again from the newest that "
                              "remains, or train in a new --workdir.")
    if is_main:
        for s, reason in skipped:
            moved = checkpoint.set_aside(workdir, s)
            logging.warning("checkpoint step %d cannot be read: %s. Skipped: moved to %s (nothing is deleted); "
                            "resuming from step %d.", s, reason, moved, step)
    distributed.wait_for_all(f"resume/{step}")
    logging.info("resuming from %s at step %d", where, step)
    return state, step
