"""The training loop fed by the real input pipeline against the same loop fed one batch that already
sits on the device (experiments/benchmarks.md "Input").

    python experiments/input_overlap.py --data demo/synthetic [--steps 160] [--rounds 2] [--out FILE]

`train` with configs/synthetic_demo.py runs --steps steps three ways, alternating, in fresh
workdirs: reading the dataset's files (Pillow decodes and transforms every example), reading the
same data prepared once (`prepare-data`: TensorFlow decodes PNGs), and with the pipeline's
iterator replaced by one batch put on the device once (no input work at all, no copies). The
loop's own images/s (metrics.jsonl, every print_freq steps, after the first 40 steps) gives each
run's median; the ratio to the resident batch is the cost of the input on this machine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from unittest import mock

import jax

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.runtime import sharding
from pix2pixhd_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic_demo.py")


def rate(workdir, skip):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "tensorboard", "metrics.jsonl"))]
    return statistics.median(r["images_per_second"] for r in rows if "images_per_second" in r and r["step"] > skip)


def run(config, workdir, resident=False):
    if not resident:
        train.train(config, workdir, progress=False)
        return
    real = InputPipeline(config, "train")
    host = next(real.iterate(0))
    batch = sharding.global_batch(host, sharding.make_mesh(), set(train.required_keys(config)))

    def one_batch_forever(self, start_step=0, num_epochs=None):
        while True:
            yield dict(batch, name=host["name"])

    with mock.patch.object(InputPipeline, "iterate", one_batch_forever):
        train.train(config, workdir, progress=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the demo's scenes (make-synthetic's output)")
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "input", "overlap.json"))
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    overrides = [f"--config.data.dataroot={data}", f"--config.train.max_steps={args.steps}",
                 "--config.train.save_latest_freq=100000", "--config.train.save_epoch_freq=100000",
                 "--config.train.display_freq=100000", "--config.train.print_freq=10"]
    results = {"files": [], "prepared": [], "resident": []}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared")
        subprocess.run([sys.executable, "-m", "pix2pixhd_jax.cli", "prepare-data", "--config", CONFIG, "--out",
                        prepared, "--split", "train", "--quiet", *overrides], cwd=ROOT, check=True)
        for r in range(args.rounds):
            for way in results:
                extra = [f"--config.data.prepared_dir={prepared}"] if way == "prepared" else []
                config = load_config(CONFIG, overrides + extra)
                workdir = os.path.join(tmp, f"{way}_{r}")
                run(config, workdir, resident=way == "resident")
                results[way].append(rate(workdir, skip=40))
                print(way, r, round(results[way][-1], 2), "images/s", flush=True)
    summary = {way: round(statistics.median(v), 3) for way, v in results.items()}
    out = {"images_per_s": summary, "runs": results, "steps": args.steps, "device": str(jax.devices()[0].device_kind),
           "cpu_count": os.cpu_count(),
           "ratio_to_resident": {w: round(summary[w] / summary["resident"], 3) for w in ("files", "prepared")}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
