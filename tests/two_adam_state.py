"""The train state as checkpoints held it before G's and D's optimizers were optax
transformations, with its update rule, kept as it was: the reference the optax optimizer is
held against (tests/test_optimizer.py) and the writer of old-layout checkpoints for the
conversion on restore.

Its G optimizer state is g_opt={'global': Adam state of the local stage's fixed part (G1, and
every enhancer but the outermost) or None, 'rest': of everything else}; updates are Adam's
moments times -lr, the fixed part held (parameters and Adam state) by jnp.where while frozen.
"""

import functools
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from pix2pixhd_jax.models.generator import G1
from pix2pixhd_jax.training.step import fixed_stage


@flax.struct.dataclass
class TwoAdamState:
    step: jax.Array
    g_params: Any
    g_stats: Any
    g_opt: Any  # {'global': Adam state of the fixed part or None, 'rest': of the rest}
    d_params: Any
    d_stats: Any
    d_opt: Any
    rng: jax.Array
    pool: Optional[Any] = None


def adam(train_cfg):
    return optax.scale_by_adam(b1=train_cfg.beta1, b2=train_cfg.beta2, eps=1e-8)


def split_fixed(g_params):
    """(the fixed stage's params or None, everything else). With one enhancer the fixed stage is
    G1's own tree; with more, {name: tree} of fixed_stage's parts."""
    gen = g_params["generator"]
    names = fixed_stage(gen)
    if not names:
        return None, g_params
    fixed = gen[G1] if names == [G1] else {k: gen[k] for k in names}
    return fixed, dict(g_params, generator={k: v for k, v in gen.items() if k not in names})


def merge_fixed(fixed, rest):
    if fixed is None:
        return rest
    parts = fixed if G1 in fixed else {G1: fixed}
    return dict(rest, generator=dict(rest["generator"], **parts))


def from_state(state, train_cfg) -> TwoAdamState:
    """`state`'s networks, step, rng and pool with fresh optimizer states of this layout."""
    opt = adam(train_cfg)
    fixed, rest = split_fixed(state.g_params)
    return TwoAdamState(step=state.step, g_params=state.g_params, g_stats=state.g_stats,
                        g_opt={"global": None if fixed is None else opt.init(fixed), "rest": opt.init(rest)},
                        d_params=state.d_params, d_stats=state.d_stats, d_opt=opt.init(state.d_params),
                        rng=state.rng, pool=state.pool)


def learning_rate(step, steps_per_epoch: int, train_cfg):
    """lr at global `step`: constant for niter epochs, then linear decay to 0 over niter_decay
    (per epoch, or per step with lr_decay_per_step)."""
    base, niter, decay = train_cfg.lr, train_cfg.niter, train_cfg.niter_decay
    step = jnp.asarray(step, jnp.float32)
    if train_cfg.lr_decay_per_step:
        done = (step - niter * steps_per_epoch) / max(decay * steps_per_epoch, 1)
    else:
        done = (jnp.floor(step / steps_per_epoch) - niter) / max(decay, 1)
    return base * jnp.clip(1.0 - done, 0.0, 1.0)


def apply_gradients(state, g_grads, d_grads, steps_per_epoch: int, train_cfg):
    """training.step.apply_gradients' contract: (state, lr, frozen)."""
    lr = learning_rate(state.step, steps_per_epoch, train_cfg)
    frozen = state.step // steps_per_epoch < train_cfg.niter_fix_global
    opt = adam(train_cfg)

    def adam_step(params, grads, opt_state):
        updates, opt_state = opt.update(grads, opt_state, params)
        return jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates), opt_state

    fixed, rest = split_fixed(state.g_params)
    fixed_grads, rest_grads = split_fixed(g_grads)
    rest, rest_opt = adam_step(rest, rest_grads, state.g_opt["rest"])
    fixed_opt = state.g_opt["global"]
    if fixed is not None:
        new_fixed, new_fixed_opt = adam_step(fixed, fixed_grads, fixed_opt)
        unless_frozen = functools.partial(jax.tree_util.tree_map, lambda old, new: jnp.where(frozen, old, new))
        fixed, fixed_opt = unless_frozen(fixed, new_fixed), unless_frozen(fixed_opt, new_fixed_opt)
    d_params, d_opt = adam_step(state.d_params, d_grads, state.d_opt)
    new_state = state.replace(step=state.step + 1, g_params=merge_fixed(fixed, rest),
                              g_opt={"global": fixed_opt, "rest": rest_opt}, d_params=d_params, d_opt=d_opt)
    return new_state, lr, frozen
