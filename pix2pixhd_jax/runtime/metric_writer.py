"""TensorBoard scalars and images without TensorFlow (tensorboardX), plus a JSONL copy.

Only process 0 writes. Where tensorboardX is missing (a bare accelerator image), the
scalars still go to metrics.jsonl and a warning says how to get TensorBoard files.
"""

import json
import logging
import os
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


class MetricWriter:
    def __init__(self, logdir: str, enabled: bool = True, resume_step: Optional[int] = None):
        """resume_step: the step the run starts from (0 for a fresh start): the records of the
        steps after it, written by a run that stopped before or after its last checkpoint, are
        dropped from metrics.jsonl and TensorBoard, so every step has one value."""
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
            from tensorboardX import SummaryWriter

            # purge_step: TensorBoard discards the old events after the resumed step too.
            self._tb = SummaryWriter(logdir, purge_step=None if resume_step is None else resume_step + 1)
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
            for key, value in values.items():
                self._tb.add_scalar(key, value, int(step))
            # Scalars come every train.print_freq steps: on disk by then, not after tensorboardX's 2 minutes.
            self._tb.flush()

    def image(self, step: int, tag: str, image: np.ndarray):
        """(H, W, 3) uint8."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, image, int(step), dataformats="HWC")

    def flush(self):
        if self._tb is not None:
            self._tb.flush()

    def close(self):
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
