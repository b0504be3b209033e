"""Train states saved in the layout before each network had one optax optimizer, converted when
a run resumes from one.

That layout kept G's (and E's) Adam state in two parts, g_opt={'global': the local stage's
fixed part (G1, and every enhancer but the outermost: G1's own tree with one enhancer,
{name: tree} with more) or None, 'rest': everything else}, and D's as one Adam state; the lr
scaled Adam's output outside the optimizer. The same training state in today's layout has
those moments and counts in G's two stages (training.step.optimizers), the fixed stage's inside
its conditional mask, whose counter, like the lr schedule's, is the global step.
"""

import logging
import os

import jax
import numpy as np
import optax

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.errors import CheckpointError, UnreadableCheckpointError
from pix2pixhd_jax.models.generator import G1
from pix2pixhd_jax.training.step import FIXED, TRAINED, TrainState, stage_labels


def is_two_adam(saved_tree) -> bool:
    """Whether a saved state (its metadata or its arrays) is in the two-part layout."""
    if not hasattr(saved_tree, "keys") or "g_opt" not in saved_tree.keys():  # None: no metadata to read
        return False
    g_opt = saved_tree["g_opt"]
    return hasattr(g_opt, "keys") and set(g_opt.keys()) == {"global", "rest"}


def from_two_adam(saved: dict) -> TrainState:
    """A two-part state (nested dicts of arrays, as checkpoint.restore_to_host reads it) in
    today's layout: the same parameters, statistics, Adam moments and counts, step, rng and pool."""
    g_params, step = saved["g_params"], np.asarray(saved["step"], np.int32)
    fixed, rest = saved["g_opt"]["global"], saved["g_opt"]["rest"]
    labels = stage_labels(g_params)

    def whole(moment):
        """One Adam moment over all of G (+E): the rest's tree with the fixed part's put back."""
        if fixed is None:
            return rest[moment]
        parts = fixed[moment] if G1 in fixed[moment] else {G1: fixed[moment]}
        return dict(rest[moment], generator=dict(rest[moment]["generator"], **parts))

    def adam(stage, count):
        mu, nu = (jax.tree_util.tree_map(lambda label, x: x if label == stage else optax.MaskedNode(), labels,
                                         whole(moment)) for moment in ("mu", "nu"))
        return optax.ScaleByAdamState(count=np.asarray(count, np.int32), mu=mu, nu=nu)

    fixed_adam = adam(FIXED, 0 if fixed is None else fixed["count"])
    by_stage = optax.transforms.PartitionState(inner_states={
        FIXED: optax.MaskedState(inner_state=optax.transforms.ConditionallyMaskState(step=step, inner_state=fixed_adam)),
        TRAINED: optax.MaskedState(inner_state=adam(TRAINED, rest["count"]))})
    lr_count = optax.ScaleByScheduleState(count=step)
    d_adam = optax.ScaleByAdamState(count=np.asarray(saved["d_opt"]["count"], np.int32), mu=saved["d_opt"]["mu"],
                                    nu=saved["d_opt"]["nu"])
    return TrainState(step=step, g_params=g_params, g_stats=saved["g_stats"], g_opt=(by_stage, lr_count),
                      d_params=saved["d_params"], d_stats=saved["d_stats"], d_opt=(d_adam, lr_count),
                      rng=saved["rng"], pool=saved.get("pool"))


def _shapes(tree):
    """The tree's structure with each leaf's shape and dtype."""
    return jax.tree_util.tree_map(lambda x: (tuple(np.shape(x)), np.dtype(x.dtype)), tree)


def restore_two_adam_state(workdir: str, step: int, like, item: str = "state"):
    """The workdir's state at `step` in today's layout (host arrays) when it was saved in the
    two-part layout; None when it was not (restore it as it is). `like`: today's state for this
    config (shapes suffice), which the converted one must match."""
    try:
        saved_tree = checkpoint.item_metadata(workdir, step, item)
    except (ValueError, KeyError, TypeError, OSError):
        return None  # unreadable: the plain restore reports it
    if not is_two_adam(saved_tree):
        return None
    where = os.path.join(checkpoint.checkpoint_dir(workdir), str(step))
    try:
        saved = checkpoint.restore_to_host(workdir, step, item)
    except UnreadableCheckpointError:
        raise  # the resume goes back to an older step
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise CheckpointError(f"{where}: the checkpoint cannot be read ({e}). Resume from another step's checkpoint "
                              "(move this one away), or start in a new --workdir.") from None
    state = from_two_adam(saved)
    if _shapes(state) != _shapes(like):
        raise CheckpointError(f"{where}: the checkpoint does not fit this config. Train with the config saved beside "
                              "it (config.json), or start in a new --workdir.")
    logging.info("step %d of %s holds G's Adam state in two parts (global, rest): converted to one optimizer "
                 "state per network", step, checkpoint.checkpoint_dir(workdir))
    return state
