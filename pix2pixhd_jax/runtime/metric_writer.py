"""TensorBoard scalars and images without TensorFlow (tensorboardX), plus a JSONL copy.

Only process 0 writes. Where tensorboardX is missing (a bare accelerator image), the
scalars still go to metrics.jsonl and a warning says how to get TensorBoard files.
"""

import json
import logging
import os

import numpy as np


class MetricWriter:
    def __init__(self, logdir: str, enabled: bool = True):
        self.logdir = logdir
        self.enabled = enabled
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        os.makedirs(logdir, exist_ok=True)
        self._jsonl = open(os.path.join(logdir, "metrics.jsonl"), "a")
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir)
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
