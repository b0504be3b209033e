"""TensorBoard scalars and images without TensorFlow (tensorboardX's event protos), plus a JSONL copy.

Only process 0 writes. Where tensorboardX is missing (a bare accelerator image), the
scalars still go to metrics.jsonl and a warning says how to get TensorBoard files.
"""

import json
import logging
import os
import sys
import time
from typing import Optional

import numpy as np

from pix2pixhd_jax import atomic


def drop_steps_after(path: str, step: int) -> int:
    """Rewrite a metrics.jsonl without its records after `step` (those a resumed run writes
    again); returns how many were dropped."""
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if int(json.loads(line)["step"]) <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            continue
    if len(keep) != len(lines):
        atomic.write_text(path, "".join(keep))
    return len(lines) - len(keep)


def _tensorboardx():
    """The parts of tensorboardX this writer uses. Its package imports torch whenever torch is
    installed (2-3 s of every process's start, for torch tensors this writer never passes), and
    takes a missing torch as numpy-only: torch is hidden from that one import."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
    finally:
        if hide and sys.modules.get("torch", False) is None:
            del sys.modules["torch"]
    return summary, EventsWriter, Event, SessionLog


class _EventFile:
    """One TensorBoard events file written synchronously with tensorboardX's protos: each write is
    on disk when it returns (tensorboardX's SummaryWriter queues events for a thread that writes
    them up to 2 minutes later, so a killed run lost its last scalars)."""

    def __init__(self, logdir: str, purge_step: Optional[int]):
        summary, EventsWriter, Event, SessionLog = _tensorboardx()
        self._summary, self._event = summary, Event
        self._file = EventsWriter(os.path.join(logdir, "events"))
        if purge_step is not None:
            # TensorBoard drops the earlier files' events from this step on (a resumed or restarted run).
            self._write(Event(wall_time=time.time(), step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def _write(self, event):
        self._file.write_event(event)
        self._file.flush()

    def scalars(self, step: int, values: dict):
        for key, value in values.items():
            self._file.write_event(self._event(wall_time=time.time(), step=step,
                                               summary=self._summary.scalar(key, value)))
        self._file.flush()

    def image(self, step: int, tag: str, image: np.ndarray):
        self._write(self._event(wall_time=time.time(), step=step,
                                summary=self._summary.image(tag, image, dataformats="HWC")))

    def close(self):
        self._file.close()


class MetricWriter:
    def __init__(self, logdir: str, enabled: bool = True, resume_step: Optional[int] = None):
        """resume_step: the step the run starts from (0 for a fresh start): the records of the
        steps after it, written by a run that stopped before or after its last checkpoint, are
        dropped from metrics.jsonl and TensorBoard, so every step has one value. Every write is
        on disk when it returns."""
        self.logdir = logdir
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        os.makedirs(logdir, exist_ok=True)
        path = os.path.join(logdir, "metrics.jsonl")
        if resume_step is not None:
            dropped = drop_steps_after(path, resume_step)
            if dropped:
                logging.info("%s: dropped %d records after step %d (the run resumes there)", path, dropped,
                             resume_step)
        self._jsonl = open(path, "a")
        try:
            self._tb = _EventFile(logdir, None if resume_step is None else resume_step + 1)
        except ImportError:
            logging.warning("tensorboardX is not installed: scalars go to %s/metrics.jsonl only "
                            "(pip install tensorboardX for TensorBoard files).", logdir)

    def scalars(self, step: int, values: dict):
        if not self.enabled:
            return
        values = {k: float(v) for k, v in values.items()}
        self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            self._tb.scalars(int(step), values)

    def image(self, step: int, tag: str, image: np.ndarray):
        """(H, W, 3) uint8."""
        if self.enabled and self._tb is not None:
            self._tb.image(int(step), tag, image)

    def flush(self):
        """Kept for callers: every write is already on disk."""

    def close(self):
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
