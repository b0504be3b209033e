"""XLA's FLOP count of the train step, and of one discriminator forward pass for scale.

    python experiments/step_flops.py --config configs/synthetic_demo.py --height 128 --width 128 --batch 2 \
        [--config.train.pool_size=50 ...]

Prints one JSON line: the step's FLOPs (what `pix2pixhd-jax benchmark` reports as flops_per_step),
and, for scale, those of one D forward pass on the batch (train mode) and of one G forward pass.
The counts are XLA's cost analysis after its own optimisations (CSE included), so two versions
of the step compare directly. Nothing runs, it only compiles, so the machine's load does not
matter.
"""

import json
import os

import jax
import jax.numpy as jnp
from step_setup import parse, step_inputs

from pix2pixhd_jax.models.pix2pixhd import apply_variables, generate, model_inputs
from pix2pixhd_jax.training import benchmark
from pix2pixhd_jax.training.step import make_train_step


def flops(fn, *args):
    return benchmark.flops_of(jax.jit(fn).lower(*args).compile())


def main(argv=None):
    args, overrides, config = parse(__doc__.splitlines()[0], argv)
    nets, state, data = step_inputs(config, args)
    step = make_train_step(config, steps_per_epoch=1000)
    x = jnp.zeros((args.batch, args.height, args.width, nets.d_in))
    out = {
        "config": args.config, "overrides": overrides, "height": args.height, "width": args.width,
        "batch": args.batch,
        "step_flops": flops(lambda s, b: step(s, b, {}), state, data),
        "d_forward_flops": flops(lambda p, s, x: apply_variables(nets.D, p, s, x, train=True), state.d_params,
                                 state.d_stats, x),
        "g_forward_flops": flops(lambda p, s, b: generate(nets, p, s, model_inputs(b, config), train=True,
                                                          rng=jax.random.PRNGKey(0))[0],
                                 state.g_params, state.g_stats, data),
        "label_channels": int(model_inputs(data, config)["label"].shape[-1]),
        "git": os.popen("git rev-parse --short HEAD 2>/dev/null").read().strip(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
