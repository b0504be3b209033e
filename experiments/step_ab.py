"""The train step with D run four times and with its shared passes, timed alternately in one process.

    python experiments/step_ab.py --config configs/synthetic_demo.py --height 128 --width 128 --batch 2 --steps 30

The four-pass step is `four_pass_step` of tests/step_oracle.py (D run as the reference's code
runs it), loaded from that file. Alternating the two in one process exposes both to the same
machine load; prints one JSON line with the median wall and process-CPU seconds per step and
the fastest step of each ("before": four passes, "after": shared passes).
"""

import importlib.util
import json
import os
import statistics
import time

import jax

from pix2pixhd_jax.training.benchmark import flops_of
from pix2pixhd_jax.training.step import make_train_step
from step_setup import parse, step_inputs

ORACLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "step_oracle.py")


def four_pass_step(config, steps_per_epoch):
    spec = importlib.util.spec_from_file_location("step_oracle", ORACLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.four_pass_step(config, steps_per_epoch)


def main(argv=None):
    def add_arguments(parser):
        parser.add_argument("--steps", type=int, default=30)
        parser.add_argument("--warmup", type=int, default=2)

    args, _, config = parse(__doc__.splitlines()[0], argv, add_arguments=add_arguments)
    _, state, data = step_inputs(config, args)
    steps = {"before": four_pass_step(config, 1000), "after": make_train_step(config, 1000)}
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
                          "min_wall_s": round(min(wall[k]), 4), "flops": flops_of(compiled[k])}
                      for k in steps} | {"steps": args.steps, "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
