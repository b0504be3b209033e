"""What the train step's backward pass keeps, network by network, for each train.remat policy
(experiments/benchmarks.md "TPU (compiled ahead of time)").

    python experiments/residuals.py [--out experiments/tpu/residuals.json]

For the two Cityscapes configs at their sizes (1024x512 global, 2048x1024 local enhancer with
num_D 3), bf16, VGG on, one image: the bytes of the residuals JAX saves for the backward pass of
G (with its input), of D on the fake photo (the real photo's pass keeps as much) and of VGG19 on
the fake photo (the real photo's pass keeps nothing), traced only (jax.vjp under jax.eval_shape:
nothing is compiled or run), with the largest residual shapes. These are what the forward
passes leave for the backward ones, before XLA:TPU fuses, schedules and lays them out; the
compiled programs' own totals are XLA:TPU's memory analysis (experiments/tpu_table.py).

Beside them, what each policy costs: the FLOPs of the whole train step for one image, from XLA's
cost analysis of the program as lowered (before any optimisation, so every recomputation counts;
one CPU device, every convolution in its lax form), and their excess over `none`.
"""

import argparse
import collections
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.models import conv
from pix2pixhd_jax.models.pix2pixhd import Networks, apply_variables, generate, model_inputs, size_divisor
from pix2pixhd_jax.models.vgg19 import VGG19Features
from pix2pixhd_jax.training import aot, losses
from pix2pixhd_jax.training.benchmark import random_batch
from pix2pixhd_jax.training.step import init_train_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"global_1024x512": ("cityscapes_1024x512.py", 512, 1024),
           "local_2048x1024": ("cityscapes_2048x1024.py", 1024, 2048)}
POLICIES = ("none", "blocks", "dots_saveable", "layers", "full")


def kept(fn, args, constants=()):
    """(total bytes, {(dtype, shape): bytes}) of the residuals held by the pullback of fn(*args,
    *constants) with respect to args, traced only."""
    pullback = jax.eval_shape(lambda a, c: jax.vjp(lambda *x: fn(*x, *c), *a)[1], tuple(args), tuple(constants))
    arg_shapes = {(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(args)}
    by_shape = collections.Counter()
    for leaf in jax.tree_util.tree_leaves(pullback):
        activation = leaf.ndim == 4 and leaf.shape[0] == 1  # one image's (1, H, W, C)
        if (leaf.shape, leaf.dtype) in arg_shapes and not activation:
            continue  # the parameters themselves, already in memory
        by_shape[(str(leaf.dtype), tuple(leaf.shape))] += int(np.prod(leaf.shape)) * leaf.dtype.itemsize
    return sum(by_shape.values()), by_shape


def measure(config_file, height, width, policy):
    config = load_config(os.path.join(ROOT, "configs", config_file),
                         ["--config.train.dtype=bfloat16", "--config.loss.no_vgg_loss=false",
                          f"--config.train.remat={policy}"])
    nets = Networks(config)
    d = size_divisor(config.model) * 2
    state = jax.eval_shape(lambda r: init_train_state(nets, r, d, d, image_size=(height, width)),
                           jax.random.PRNGKey(0))
    batch = jax.eval_shape(lambda: random_batch(config, 1, height, width))
    inputs = jax.eval_shape(lambda b: model_inputs(b, config), batch)
    vgg = VGG19Features(remat=nets.remat, dtype=nets.G.dtype)
    vgg_vars = jax.eval_shape(vgg.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    fake = jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32)
    label = jax.ShapeDtypeStruct(inputs["label"].shape, nets.G.dtype)

    def g(params, b):
        return generate(nets, params, state.g_stats, model_inputs(b, config), train=True,
                        rng=jax.random.PRNGKey(0))[0]

    def d_fake(params, image):
        x = jnp.concatenate([jnp.zeros(label.shape, label.dtype), image.astype(nets.G.dtype)], -1)
        return apply_variables(nets.D, params, state.d_stats, x, train=True)[0]

    def vgg_loss(image):
        return losses.vgg_loss(vgg.apply, vgg_vars, image, jnp.zeros(image.shape, image.dtype), batched=False)

    out = {}
    for name, fn, args, constants in (("G", g, (state.g_params,), (batch,)),
                                      ("D_fake", d_fake, (state.d_params, fake), ()),
                                      ("VGG_fake", vgg_loss, (fake,), ())):
        total, by_shape = kept(fn, args, constants)
        out[name] = {"bytes": total, "largest": [[k[0], list(k[1]), v] for k, v in by_shape.most_common(4)]}
    with conv.lax_ops():
        cost = aot.lower_program(config, jax.devices("cpu")[:1], height, width, 1).cost_analysis()
    out["step_flops"] = float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "tpu", "residuals.json"))
    args = parser.parse_args()
    results = {f"{key}/{policy}": measure(*spec, policy) for key, spec in CONFIGS.items() for policy in POLICIES}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    gib = 2 ** 30
    print("| config | remat | G | D (fake; real the same) | VGG19 (fake) | total, with D twice | step FLOPs | over none |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        g, d, v = (r[k]["bytes"] / gib for k in ("G", "D_fake", "VGG_fake"))
        key, policy = name.split("/")
        extra = r["step_flops"] / results[f"{key}/none"]["step_flops"] - 1
        print(f"| {key} | {policy} | {g:.2f} GiB | {d:.2f} GiB | {v:.2f} GiB | {g + 2 * d + v:.2f} GiB | "
              f"{r['step_flops'] / 1e12:.2f} TFLOP | {100 * extra:+.1f}% |")


if __name__ == "__main__":
    main()
