"""Train-step test helpers: tiny configs, train states filled from numpy, learnable batches.

The train-step tests, the step-formulation tests and the 4-device subprocess share them.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.models.pix2pixhd import apply_variables, generate, model_inputs
from pix2pixhd_jax.models.pixels import from_levels
from pix2pixhd_jax.training.step import FIXED, init_train_state

LABEL_NC = 8
H = W = 32
# A pix2pixHD G and D with the fewest layers each path allows.
TINY = ("model.ngf=4", "model.ndf=4", "model.n_downsample_global=1", "model.n_blocks_global=1",
        "model.num_D=1", "model.n_layers_D=1", f"data.label_nc={LABEL_NC}", "train.batch_size=2",
        "train.lr=1e-3", "train.niter=1000", "train.niter_decay=1000")


SHARDED_CONFIG = ("model.ngf=16", "model.ndf=4", "model.n_downsample_global=2", "model.n_blocks_global=1",
                  "model.num_D=2", "model.n_layers_D=1", f"data.label_nc={LABEL_NC}", "train.batch_size=4",
                  "train.lr=2e-4")


def leaf_name(path):
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def fast_state(nets, height, width, seed=0):
    """A TrainState shaped exactly like init_train_state's, filled from numpy by leaf name
    (kernels N(0, 0.02), biases U(-0.1, 0.1), norm scales ~1, batch-norm mean 0 / var 1,
    Adam state zero, as optax initialises it), so no init program is compiled."""
    shapes = jax.eval_shape(lambda r: init_train_state(nets, r, height, width), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        top, name = path[0].name, leaf_name(path)
        if top in ("g_params", "d_params"):
            if name == "kernel":
                value = rng.normal(0.0, 0.02, s.shape)
            elif name == "bias":
                value = rng.uniform(-0.1, 0.1, s.shape)
            elif name == "scale":
                value = rng.normal(1.0, 0.02, s.shape)
            else:
                raise ValueError(f"no fill rule for parameter {jax.tree_util.keystr(path)}")
            return np.asarray(value, s.dtype)
        if top == "rng":
            return np.asarray(jax.random.PRNGKey(seed))
        if name == "var":
            return np.ones(s.shape, s.dtype)
        return np.zeros(s.shape, s.dtype)  # step, batch-norm means, Adam mu/nu/count, pool

    return jax.tree_util.tree_map_with_path(fill, shapes)


def flat(tree):
    """{keystr: numpy array} of a tree's leaves."""
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def trees_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def changed_fraction(a, b):
    """Fraction of parameter leaves whose values changed at all."""
    flags = [not np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)]
    return sum(flags) / len(flags)


def g_adam(g_opt, stage):
    """The Adam state (count, mu, nu) of G's FIXED or TRAINED stage in a train state's g_opt."""
    inner = g_opt[0].inner_states[stage].inner_state
    return inner.inner_state if stage == FIXED else inner  # the fixed stage's sits in its conditional mask


def d_adam(d_opt):
    """The Adam state of a train state's d_opt."""
    return d_opt[0]


def make_batch(batch_size, height, width, label_nc, seed=0, use_instance=True):
    """Block label maps (8x8 blocks) and a photo whose colour is a fixed function of the
    label plus a little noise: learnable from the labels, different for every seed. As the input
    pipeline carries a batch (data/pipeline.py): uint8 label ids, uint16 instance ids, the photo's
    uint8 levels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, label_nc, (batch_size, height // 8, width // 8))
    label_ids = np.kron(ids, np.ones((1, 8, 8), np.int64))
    blocks = np.arange(ids[0].size).reshape(ids[0].shape)
    inst = label_ids * 1000 + np.kron(blocks, np.ones((8, 8), np.int64))[None]
    colours = np.random.default_rng(1234).uniform(-0.9, 0.9, (label_nc, 3))
    image = np.clip(colours[label_ids] + rng.normal(0.0, 0.05, label_ids.shape + (3,)), -1, 1)
    batch = {"label_ids": label_ids.astype(np.uint8), "image": np.floor((image + 1) * 127.5 + 0.5).astype(np.uint8)}
    if use_instance:
        batch["inst"] = inst.astype(np.uint16)
    return batch


def photo(batch):
    """The batch's photo as the networks see it: float32 in [-1, 1]."""
    return from_levels(batch["image"], 8)


def normalised_away(nets, state, batch):
    """The biases a normalisation right after them subtracts again (a conv's bias before instance
    or batch norm), as (part, keystr) pairs: shifting one leaves G's picture and every D feature
    the same; with them, the batch norms' running statistics that such a shift moves. Their
    gradient is float rounding, which Adam turns into steps of about lr of either sign, so two
    programs that round differently (four D passes against two, two Adams against optax) move them
    apart while training alike; comparisons of two such programs leave them out."""
    config = nets.config
    inputs = model_inputs(batch, config)

    @jax.jit
    def outputs(g_params, d_params):
        fake, g_stats = generate(nets, g_params, state.g_stats, inputs, train=True, rng=jax.random.PRNGKey(0))
        features, d_stats = apply_variables(nets.D, d_params, state.d_stats,
                                            jnp.concatenate([inputs["label"], fake], -1), train=True)
        return (fake, features), {"g_stats": g_stats, "d_stats": d_stats}

    def close(x, y):
        return np.allclose(x, y, rtol=0, atol=1e-4)

    params = {"g_params": state.g_params, "d_params": state.d_params}
    base, base_stats = outputs(**params)
    away = set()
    for part, tree in params.items():
        for path, _ in jax.tree_util.tree_leaves_with_path(tree):
            if leaf_name(path) != "bias":
                continue
            shifted = jax.tree_util.tree_map_with_path(lambda p, x, at=path: x + 1.0 if p == at else x, tree)
            got, stats = outputs(**{**params, part: shifted})
            if all(map(close, jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(base))):
                away.add((part, jax.tree_util.keystr(path)))
                for name in stats:
                    away |= {(name, jax.tree_util.keystr(p)) for (p, x), y in
                             zip(jax.tree_util.tree_leaves_with_path(stats[name]),
                                 jax.tree_util.tree_leaves(base_stats[name]), strict=True) if not close(x, y)}
    return away
