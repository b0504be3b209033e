"""Synthesis in bfloat16 and float16 against float32: level differences and CPU latency.

    python experiments/reduced_precision.py --workdir demo/run --dataroot demo/synthetic \
        [--out experiments/reduced_precision.json] [--repeats 5]

Every test scene of --dataroot (label and instance maps) is synthesized by the workdir's model
in each dtype (`Synthesizer(dtype=...)`: conv parameters cast once, normalisation in float32);
the photos are compared with float32's in uint8 levels, and one batch-1 synthesis is timed
(median of --repeats after the compile). Prints one JSON object and writes it to --out.
"""

import argparse
import json
import platform
import statistics
import time

import jax
import numpy as np

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data import decode
from pix2pixhd_jax.data.readers import read_source
from pix2pixhd_jax.inference.synthesis import Synthesizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--out", default="experiments/reduced_precision.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = checkpoint.read_config(args.workdir)
    config.data.dataroot = args.dataroot
    source = read_source(config.data, "test")
    scenes = []
    for ex in source.examples:
        label = decode.decode_label(open(ex.label, "rb").read(), ex.label, int(config.data.label_nc))
        inst = decode.decode_instances(open(ex.inst, "rb").read(), ex.inst) if ex.inst else None
        scenes.append((label, inst))
    photos, latency = {}, {}
    for dtype in ("float32", "bfloat16", "float16"):
        synth = Synthesizer.from_workdir(args.workdir, dtype=dtype)
        photos[dtype] = np.stack([synth.synthesize(label, inst, seed=0) for label, inst in scenes])
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            synth.synthesize(*scenes[0], seed=0)
            times.append(time.perf_counter() - start)
        latency[dtype] = statistics.median(times)
    result = {"workdir": args.workdir, "dataroot": args.dataroot, "scenes": len(scenes),
              "size": list(photos["float32"].shape[1:3][::-1]), "device": str(jax.devices()[0].device_kind),
              "jax": jax.__version__, "python": platform.python_version(), "dtypes": {}}
    for dtype, photo in photos.items():
        diff = np.abs(photo.astype(np.int32) - photos["float32"].astype(np.int32))
        result["dtypes"][dtype] = {
            "median_latency_s": round(latency[dtype], 4),
            "mean_level_difference": round(float(diff.mean()), 3),
            "p99_level_difference": float(np.percentile(diff, 99)),
            "max_level_difference": int(diff.max()),
            "fraction_over_8_levels": round(float((diff > 8).mean()), 5)}
    atomic.write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
