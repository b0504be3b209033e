"""Synthesis latency of the Synthesizer (the API the CLI and the editor use), random weights.

    python experiments/synthesis_latency.py --config configs/default.py --sizes 256x128 512x256 1024x512

One JSON line per size: the first call (compile included), then the median of --repeats
calls of Synthesizer.synthesize (host work included: checks, padding, the style feature
map, transfers). The architecture is the config's
(default.py: the reference's 1024x512 global generator, ngf 64, 9 blocks), with the
feature encoder on unless --no-features. Needs no TensorFlow.
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import jax

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.inference import features
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.weights.filled import random_variables


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--sizes", nargs="+", default=["256x128", "512x256", "1024x512"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-features", action="store_true")
    args, overrides = parser.parse_known_args()
    if not args.no_features:
        overrides = ["--config.model.instance_feat=True"] + overrides
    config = load_config(args.config, overrides)
    variables = random_variables(Networks(config))
    clusters = None
    if not args.no_features:
        rng = np.random.default_rng(0)
        clusters = features.FeatureClusters({k: rng.normal(0, 0.3, (10, config.model.feat_num)).astype(np.float32)
                                             for k in range(config.data.label_nc)}, config.model.feat_num)
    synth = Synthesizer(config, variables, clusters)
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        rng = np.random.default_rng(1)
        label = np.kron(rng.integers(0, config.data.label_nc, (h // 16, w // 16)), np.ones((16, 16), int))
        inst = label * 1000 + np.kron(np.arange((h // 16) * (w // 16)).reshape(h // 16, w // 16), np.ones((16, 16), int))
        start = time.perf_counter()
        synth.synthesize(label, inst)
        compile_s = time.perf_counter() - start
        times = []
        for k in range(args.repeats):
            start = time.perf_counter()
            synth.synthesize(label, inst, sample=k)
            times.append(time.perf_counter() - start)
        print(json.dumps({
            "size": size, "config": args.config, "overrides": overrides, "features": not args.no_features,
            "first_call_s": round(compile_s, 3), "median_s": round(float(np.median(times)), 4),
            "repeats": args.repeats, "device": str(jax.devices()[0]), "jax": jax.__version__,
            "cpu_count": os.cpu_count(), "python": platform.python_version()}), flush=True)


if __name__ == "__main__":
    main()
