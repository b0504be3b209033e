"""XLA's memory estimates of the accelerator's train step, from compiles on this machine (nothing runs).

    python experiments/memory_table.py [--out experiments/memory/estimates.json] [--budgets 16 40 80]

For 1024x512 (the global generator, configs/cityscapes_1024x512.py) and 2048x1024 (the local
enhancer with num_D 3, configs/cityscapes_2048x1024.py), both with the VGG loss, in float32
and bfloat16, with train.remat none and blocks: `benchmark --compile-only`'s estimate at batch 1 and 2,
the largest batch under each budget (GiB) from the line through those two, checked by compiling
that batch (and the one below when it is over). Resumable: finished entries in --out are kept.
Prints a markdown table.
"""

import argparse
import json
import os

from pix2pixhd_jax import atomic
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.training.benchmark import compile_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = {
    "global_1024x512": ("cityscapes_1024x512.py", 512, 1024),
    "local_2048x1024": ("cityscapes_2048x1024.py", 1024, 2048),
}
GIB = 2 ** 30


def estimate(results, key, config_file, height, width, dtype, remat, batch):
    name = f"{key}/{dtype}/{'remat' if remat else 'no_remat'}/b{batch}"
    if name not in results:
        overrides = ["--config.loss.no_vgg_loss=false", f"--config.train.dtype={dtype}",
                     f"--config.train.remat={str(remat).lower()}"]
        config = load_config(os.path.join(ROOT, "configs", config_file), overrides)
        results[name] = compile_only(config, height, width, batch)
        print(name, round(results[name]["estimated_device_bytes"] / GIB, 2), "GiB",
              results[name]["compile_s"], "s", flush=True)
    return results[name]["estimated_device_bytes"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "memory", "estimates.json"))
    parser.add_argument("--budgets", type=float, nargs="+", default=[16, 40, 80])
    args = parser.parse_args()
    results = json.load(open(args.out)) if os.path.isfile(args.out) else {}
    rows = []
    for key, (config_file, height, width) in CASES.items():
        for dtype in ("float32", "bfloat16"):
            for remat in (False, True):
                def at(b):
                    value = estimate(results, key, config_file, height, width, dtype, remat, b)
                    atomic.write_json(args.out, results)
                    return value

                one, two = at(1), at(2)
                per_image, fixed = two - one, 2 * one - two
                largest = {}
                for budget in args.budgets:
                    b = int((budget * GIB - fixed) // per_image) if per_image > 0 else 0
                    while b >= 1 and at(b) > budget * GIB:
                        b -= 1
                    largest[budget] = b
                rows.append((key, dtype, remat, one, per_image, largest))
    print("\n| program | dtype | remat | batch 1 | per extra image | " +
          " | ".join(f"largest batch <= {b:g} GiB" for b in args.budgets) + " |")
    print("| --- " * (5 + len(args.budgets)) + "|")
    for key, dtype, remat, one, per_image, largest in rows:
        print(f"| {key} | {dtype} | {'yes' if remat else 'no'} | {one / GIB:.2f} GiB | {per_image / GIB:.2f} GiB | " +
              " | ".join(str(largest[b]) for b in args.budgets) + " |")


if __name__ == "__main__":
    main()
