"""Learning-rate schedule and training stages, as functions of the global step.

The reference keeps lr for `niter` epochs, then after each later epoch lowers it by
lr / niter_decay, so during 0-based epoch k >= niter it is lr * (1 - (k - niter) / niter_decay)
and it reaches 0 after the last epoch. `lr_decay_per_step` spreads the same decay over steps.
"""

import optax


def epoch_of(step, steps_per_epoch: int):
    return step // steps_per_epoch


def learning_rate_schedule(steps_per_epoch: int, train_cfg, base_lr=None) -> optax.Schedule:
    """The reference's lr as an optax schedule of the global step, from train.lr or `base_lr`."""
    base = train_cfg.lr if base_lr is None else base_lr
    niter, decay = train_cfg.niter, train_cfg.niter_decay
    if train_cfg.lr_decay_per_step:
        return optax.linear_schedule(base, 0.0, transition_steps=max(decay * steps_per_epoch, 1),
                                     transition_begin=niter * steps_per_epoch)
    per_epoch = optax.linear_schedule(base, 0.0, transition_steps=max(decay, 1), transition_begin=niter)
    return lambda step: per_epoch(epoch_of(step, steps_per_epoch))


def learning_rate(step, steps_per_epoch: int, train_cfg):
    """lr at global `step` (an int or a traced scalar)."""
    return learning_rate_schedule(steps_per_epoch, train_cfg)(step)


def global_generator_frozen(step, steps_per_epoch: int, train_cfg):
    """True while the local stage keeps G1 fixed (the first niter_fix_global epochs)."""
    return epoch_of(step, steps_per_epoch) < train_cfg.niter_fix_global


def total_steps(steps_per_epoch: int, train_cfg) -> int:
    return (train_cfg.niter + train_cfg.niter_decay) * steps_per_epoch


def gradient_clipping(train_cfg) -> tuple:
    """() or (optax.clip_by_global_norm(train.grad_clip_norm),): a network's gradient scaled down
    to that global norm before Adam sees it (not the reference's, nor OASIS's; 0 = none). One
    step's gradient a million times the usual otherwise fills Adam's second moment for thousands
    of steps (beta2 0.999), and the parameters it hit stop moving: OASIS's first steps give such
    gradients (spectral norm's power iteration trails its small initial weights, and D's logits
    blow up for a step), after which its D's last layer stayed where it started."""
    norm = float(getattr(train_cfg, "grad_clip_norm", 0.0))
    return (optax.clip_by_global_norm(norm),) if norm > 0 else ()
