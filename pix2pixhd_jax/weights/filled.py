"""Weights without a weight file: arrays of given shapes filled from numpy by leaf name, so no
init program is compiled (tests, benchmarks; speed does not depend on the values)."""

import jax
import numpy as np

from pix2pixhd_jax.models.pix2pixhd import size_divisor


def fill_like(shapes, seed: int = 0):
    """Arrays of the shapes and dtypes of `shapes` (a pytree of ShapeDtypeStructs, e.g. from
    jax.eval_shape), by leaf name: kernels N(0, 0.05), biases U(-0.1, 0.1), scales N(1, 0.02),
    variances 1, everything else 0 (means, optimizer counts, the step, the pool)."""
    rng = np.random.default_rng(seed)
    draw = {"kernel": lambda shape: rng.normal(0.0, 0.05, shape), "bias": lambda shape: rng.uniform(-0.1, 0.1, shape),
            "scale": lambda shape: rng.normal(1.0, 0.02, shape), "var": np.ones}

    def fill(path, s):
        name = str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1])))
        return np.asarray(draw.get(name, np.zeros)(s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def random_variables(nets, seed: int = 0) -> dict:
    """{'generator', 'discriminator'[, 'encoder']: {'params', 'batch_stats'}} of `nets`
    (models.pix2pixhd.Networks), filled by fill_like: what a checkpoint's models hold."""
    side = size_divisor(nets.config.model) * 2  # the parameters' shapes do not depend on the size
    g_params, g_stats, d_params, d_stats = fill_like(
        jax.eval_shape(lambda: nets.init(jax.random.PRNGKey(0), side, side)), seed)
    out = {name: {"params": g_params[name], "batch_stats": g_stats[name]} for name in g_params}
    out["discriminator"] = {"params": d_params, "batch_stats": d_stats}
    return out
