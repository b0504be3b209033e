"""The train step before and after issue 7 (shared discriminator passes), timed alternately in one process.

    python experiments/step_ab.py --config configs/synthetic_demo.py --height 128 --width 128 --batch 2 --steps 30

The old step is `reference_step` of tests/test_step_formulation.py (the step as it was, verbatim).
Alternating the two in one process exposes both to the same machine load; prints one JSON line
with the median wall and process-CPU seconds per step and the fastest step of each.
"""

import json
import os
import statistics
import sys
import time

from step_setup import parse, step_inputs

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import jax  # noqa: E402

from pix2pixhd_jax import benchmark  # noqa: E402
from pix2pixhd_jax.train_step import make_train_step  # noqa: E402
from test_step_formulation import reference_step  # noqa: E402


def main(argv=None):
    def add_arguments(parser):
        parser.add_argument("--steps", type=int, default=30)
        parser.add_argument("--warmup", type=int, default=2)

    args, _, config = parse(__doc__.splitlines()[0], argv, add_arguments=add_arguments)
    _, state, data = step_inputs(config, args)
    steps = {"before": reference_step(config, 1000), "after": make_train_step(config, 1000)}
    states = {k: jax.device_put(state) for k in steps}
    compiled = {k: jax.jit(f).lower(states[k], data, {}).compile() for k, f in steps.items()}
    wall, cpu = {k: [] for k in steps}, {k: [] for k in steps}
    for i in range(args.warmup + args.steps):
        for k in (("before", "after") if i % 2 == 0 else ("after", "before")):
            t, c = time.perf_counter(), time.process_time()
            states[k], metrics, _ = compiled[k](states[k], data, {})
            jax.block_until_ready(metrics)
            if i >= args.warmup:
                wall[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
    print(json.dumps({k: {"median_wall_s": round(statistics.median(wall[k]), 4),
                          "median_cpu_s": round(statistics.median(cpu[k]), 4),
                          "min_wall_s": round(min(wall[k]), 4), "flops": benchmark._flops(compiled[k])}
                      for k in steps} | {"steps": args.steps, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
