"""What inference reads of a training checkpoint: the whole train state, or G's part only.

Builds a model's train state from its shapes (default configs/cityscapes_1024x512.py, the
reference's 512p global generator; jax.eval_shape, no init program), fills it from numpy as a
trained state is (kernels N(0, 0.02), every other float array, Adam's moments included,
N(0, 1e-3): zeros would compress to nothing and hide what the moments cost), saves it as
`train` does (item 'state' of a CheckpointManager step) and restores it each way, alternating,
`--repeats` times:

  whole    checkpoint.restore_to_host(workdir, step, "state"): every array (what synthesize,
           export, serve and evaluate read before they read G only)
  partial  the same with parts=("g_params", "g_stats"): what they read now

Before each restore the checkpoint's files are dropped from the page cache (posix_fadvise
DONTNEED on each file; the machine's other files are left alone), so every restore reads
from storage. Reported per restore: seconds; the bytes the OCDBT index says the arrays need
(`index_bytes`: their stored, compressed sizes); and the process's /proc/self/io deltas,
`read_bytes` (fetched from storage) and `rchar` (all read calls, page cache or not).

    python experiments/restore_partial.py --workdir /tmp/restore_1024 --out experiments/restore_partial.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import numpy as np

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.models.pix2pixhd import Networks, size_divisor
from pix2pixhd_jax.training.step import init_train_state

STEP = 1000
PARTS = ("g_params", "g_stats")


def dense_like(shapes, seed=0):
    rng = np.random.default_rng(seed)

    def fill(path, s):
        if not np.issubdtype(s.dtype, np.floating):
            return np.zeros(s.shape, s.dtype)
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1])))
        scale = 0.02 if name == "kernel" else 1e-3
        return np.asarray(rng.normal(0.0, scale, s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def build(config, workdir: str):
    nets = Networks(config)
    side = size_divisor(config.model) * 2
    shapes = jax.eval_shape(lambda r: init_train_state(nets, r, side, side), jax.random.PRNGKey(0))
    state = dense_like(shapes).replace(rng=np.asarray(jax.random.PRNGKey(0)))
    mngr = checkpoint.train_manager(workdir, keep=1)
    checkpoint.save_state(mngr, STEP, state)
    mngr.wait_until_finished()
    mngr.close()
    checkpoint.write_config(workdir, config)


def io_counters() -> dict:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def evict(root: str):
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)  # written pages must be clean before the cache lets them go
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def index_bytes(workdir: str, parts) -> int:
    item = os.path.join(checkpoint.step_dir(workdir, STEP), "state")
    return sum(n for key, _, _, n in checkpoint.stored_values(item)
               if key and (parts is None or checkpoint.key_part(key) in parts))


def restore_once(workdir: str, parts) -> dict:
    evict(checkpoint.step_dir(workdir, STEP))
    before, start = io_counters(), time.perf_counter()
    tree = checkpoint.restore_to_host(workdir, STEP, "state", parts)
    seconds = time.perf_counter() - start
    after = io_counters()
    arrays = sum(x.nbytes for x in jax.tree_util.tree_leaves(tree))
    return {"seconds": round(seconds, 3), "read_bytes": after["read_bytes"] - before["read_bytes"],
            "rchar": after["rchar"] - before["rchar"], "array_bytes": int(arrays)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cityscapes_1024x512.py")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if checkpoint.latest_step(args.workdir, "state") != STEP:
        start = time.perf_counter()
        build(config, args.workdir)
        print(f"checkpoint written in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    runs = {"whole": [], "partial": []}
    for _ in range(args.repeats):
        for name, parts in (("whole", None), ("partial", PARTS)):
            runs[name].append(restore_once(args.workdir, parts))
            print(name, runs[name][-1], file=sys.stderr)
    ckpt = checkpoint.step_dir(args.workdir, STEP)
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ckpt) for f in fs)
    result = {
        "config": args.config, "checkpoint_bytes_on_disk": on_disk,
        "index_bytes": {"whole": index_bytes(args.workdir, None), "partial": index_bytes(args.workdir, PARTS)},
        "runs": runs,
        "median_seconds": {k: float(np.median([r["seconds"] for r in v])) for k, v in runs.items()},
        "median_read_bytes": {k: int(np.median([r["read_bytes"] for r in v])) for k, v in runs.items()},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip(),
        "machine": f"{platform.node()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "jax": jax.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
