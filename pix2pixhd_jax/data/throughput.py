"""`pix2pixhd-jax benchmark --input`: images/s of the input pipeline alone, and what it sends.

The pipeline of `train` for the config (its dataset, or data.prepared_dir's prepared form),
with `workers` parallel calls and threads, timed over `images` examples after `warmup`
examples; nothing is put on a device. One JSON record: images_per_s, bytes_per_example (what a
batch carries to the device per example), the sizes, the path (files or prepared) and the
machine's core count. experiments/benchmarks.md "Input" compares it with the reference's input
path (its AlignedDataset through torch's DataLoader).
"""

import copy
import os
import platform
import time

from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.errors import UserError


def measure(config, images: int = 48, warmup: int = 8, workers: int = 0, split: str = "train") -> dict:
    if images < 1 or warmup < 0:
        raise UserError(f"--images {images} must be >= 1 and --warmup {warmup} >= 0.")
    if workers < 0:
        raise UserError(f"--workers {workers}: give 1 or more parallel calls (0: one per core).")
    config = copy.deepcopy(config)
    n = workers or os.cpu_count() or 1
    config.data.num_parallel_calls = n
    pipeline = InputPipeline(config, split)
    batches = pipeline.iterate(0)
    seen, nbytes, start = 0, None, None
    while seen < warmup + images:
        if seen >= warmup and start is None:
            start = time.perf_counter()
        batch = next(batches)
        size = len(batch["name"])
        if nbytes is None:
            nbytes = sum(v.nbytes for k, v in batch.items() if k != "name") // size
        seen += size
    seconds = time.perf_counter() - start
    timed = seen - warmup
    width, height = pipeline.output_size
    return {"what": "input", "config": config.name, "split": split,
            "source": "prepared" if config.data.prepared_dir else "files",
            "description": pipeline.description, "images_per_s": round(timed / seconds, 3), "images": timed,
            "warmup": warmup, "seconds": round(seconds, 3), "workers": n, "batch": pipeline.batch,
            "bytes_per_example": int(nbytes), "width": width, "height": height,
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
