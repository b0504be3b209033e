"""Learning-rate schedule and training stages, as functions of the global step.

The reference keeps lr for `niter` epochs, then after each later epoch lowers it by
lr / niter_decay, so during 0-based epoch k >= niter it is lr * (1 - (k - niter) / niter_decay)
and it reaches 0 after the last epoch. `lr_decay_per_step` spreads the same decay over steps.
"""

import jax.numpy as jnp


def epoch_of(step, steps_per_epoch: int):
    return step // steps_per_epoch


def learning_rate(step, steps_per_epoch: int, train_cfg):
    """lr at global `step` (an int or a traced scalar)."""
    base, niter, decay = train_cfg.lr, train_cfg.niter, train_cfg.niter_decay
    step = jnp.asarray(step, jnp.float32)
    if train_cfg.lr_decay_per_step:
        done = (step - niter * steps_per_epoch) / max(decay * steps_per_epoch, 1)
    else:
        done = (jnp.floor(step / steps_per_epoch) - niter) / max(decay, 1)
    return base * jnp.clip(1.0 - done, 0.0, 1.0)


def global_generator_frozen(step, steps_per_epoch: int, train_cfg):
    """True while the local stage keeps G1 fixed (the first niter_fix_global epochs)."""
    return epoch_of(step, steps_per_epoch) < train_cfg.niter_fix_global


def total_steps(steps_per_epoch: int, train_cfg) -> int:
    return (train_cfg.niter + train_cfg.niter_decay) * steps_per_epoch
