"""OASIS's train state and its pure train step (model.netD = 'oasis'), beside pix2pixHD's step.

One step is one iteration of boschresearch/OASIS's train.py: G's update first (G on the batch's
labels with fresh 3D noise, D segments G's images, G's loss = D's real-image loss on them, plus
VGG and L1 terms when configured), then D's update on images of the *updated* G (fresh noise
again, no gradient to G): the (N+1)-class loss on them and on the photos, plus LabelMix, whose
three passes of D all carry gradient; then the moving average of G's variables (parameters,
batch-norm statistics and spectral norm's u and v alike, as OASIS averages its whole state dict).
Every pass runs in training mode and threads the statistics on in the reference's order: G's
batch norm and spectral norm see two passes per step, D's spectral norm four (three without
LabelMix).

G and D have Adam each with betas (train.beta1, train.beta2), G at train.lr and D at train.lr_D
(train.lr when -1), on the reference's schedule (training.schedule).

The batch is what the input pipeline carries; models.pix2pixhd.model_inputs builds the one-hot
labels and the photo in [-1, 1] here. The state keeps pix2pixHD's field names (g_params, g_stats,
d_params, d_stats, ...) so the loop, checkpoints and init_from read it alike, and adds ema_params
and ema_stats (None without EMA).
"""

from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from pix2pixhd_jax.errors import ConfigError
from pix2pixhd_jax.models.pix2pixhd import Networks, apply_variables, generate, model_inputs
from pix2pixhd_jax.training import losses, oasis_losses, schedule


@flax.struct.dataclass
class OASISTrainState:
    step: jax.Array
    g_params: Any  # {'generator': ...}
    g_stats: Any  # {'generator': batch-norm statistics and spectral norm's u, v}
    g_opt: Any
    d_params: Any
    d_stats: Any  # spectral norm's u, v
    d_opt: Any
    rng: jax.Array
    ema_params: Optional[Any] = None  # the moving average of g_params (train.ema_decay > 0)
    ema_stats: Optional[Any] = None


def d_learning_rate(train_cfg) -> float:
    lr_d = float(train_cfg.get("lr_D", -1.0))
    return float(train_cfg.lr) if lr_d < 0 else lr_d


def oasis_optimizers(train_cfg, steps_per_epoch: int):
    """(G's optimizer, D's): Adam (eps 1e-8, torch's default) at the schedule's lr, D's with its own
    base lr."""
    moments = optax.scale_by_adam(b1=train_cfg.beta1, b2=train_cfg.beta2, eps=1e-8)
    g_lr = optax.scale_by_learning_rate(schedule.learning_rate_schedule(steps_per_epoch, train_cfg))
    d_lr = optax.scale_by_learning_rate(schedule.learning_rate_schedule(steps_per_epoch, train_cfg,
                                                                               d_learning_rate(train_cfg)))
    clip = schedule.gradient_clipping(train_cfg)
    return optax.chain(*clip, moments, g_lr), optax.chain(*clip, moments, d_lr)


def check_oasis_config(config):
    """What OASIS's step needs of the config, each a ConfigError naming the fix."""
    if config.model.netG != "spade":
        raise ConfigError(f"model.netD=oasis trains a SPADE generator, but model.netG={config.model.netG!r}: set "
                          "model.netG=spade (configs/oasis_*.py).")
    if not config.data.label_nc:
        raise ConfigError("model.netD=oasis needs label ids (data.label_nc > 0) to segment into.")
    if config.model.instance_feat or config.model.label_feat:
        raise ConfigError("model.netD=oasis: the feature encoder (model.instance_feat, model.label_feat) is "
                          "pix2pixHD's; OASIS varies its pictures with 3D noise (model.z_dim). Turn them off.")
    if config.train.pool_size > 0:
        raise ConfigError("model.netD=oasis has no image pool (train.pool_size must be 0).")
    if not 0 <= float(config.train.ema_decay) < 1:
        raise ConfigError(f"train.ema_decay={config.train.ema_decay} is not in [0, 1).")


def init_oasis_train_state(nets: Networks, rng, height: int, width: int) -> OASISTrainState:
    """A fresh state; the moving average starts as a copy of G, as OASIS's deepcopy does."""
    config = nets.config
    check_oasis_config(config)
    k_init, k_state = jax.random.split(rng)
    g_params, g_stats, d_params, d_stats = nets.init(k_init, height, width)
    g_tx, d_tx = oasis_optimizers(config.train, steps_per_epoch=1)
    use_ema = float(config.train.ema_decay) > 0
    return OASISTrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_stats=g_stats,
                           g_opt=g_tx.init(g_params), d_params=d_params, d_stats=d_stats, d_opt=d_tx.init(d_params),
                           rng=k_state, ema_params=g_params if use_ema else None,
                           ema_stats=g_stats if use_ema else None)


def start_ema_from_generator(state: OASISTrainState) -> OASISTrainState:
    """The moving average reset to G (after G's weights were loaded from elsewhere)."""
    if state.ema_params is None:
        return state
    return state.replace(ema_params=state.g_params, ema_stats=state.g_stats)


def make_oasis_train_step(config, steps_per_epoch: int, vgg_apply=None):
    """The pure OASIS step: (state, batch, vgg_variables) -> (state, metrics, G's images)."""
    check_oasis_config(config)
    nets = Networks(config)
    loss_cfg, train_cfg = config.loss, config.train
    num_classes = int(config.data.label_nc)
    balancing, dontcare = not loss_cfg.no_balancing_inloss, bool(loss_cfg.contain_dontcare_label)
    lambda_labelmix, decay = float(loss_cfg.lambda_labelmix), float(train_cfg.ema_decay)
    g_tx, d_tx = oasis_optimizers(train_cfg, steps_per_epoch)

    def step_fn(state: OASISTrainState, batch, vgg_variables):
        rng, k_g, k_d, k_mix = jax.random.split(state.rng, 4)
        inputs = model_inputs(batch, config)
        ids, real = inputs["label_ids"], inputs["image"]

        def d_apply(params, stats, image):
            return apply_variables(nets.D, params, stats, image, train=True)

        # G's update: D (pre-update) segments G's images; G is pushed to have them segmented as labelled.
        def g_loss_fn(g_params):
            fake, g_stats = generate(nets, g_params, state.g_stats, inputs, train=True, rng=k_g)
            logits, d_stats = d_apply(state.d_params, state.d_stats, fake)
            terms = {"loss_G_adv": oasis_losses.oasis_generator_loss(logits, ids, balancing, dontcare)}
            if vgg_apply is not None:
                terms["loss_G_VGG"] = losses.vgg_loss(vgg_apply, vgg_variables, fake, real,
                                                      batched=False) * loss_cfg.lambda_feat
            if loss_cfg.lambda_l1 > 0:
                terms["loss_G_L1"] = losses.l1_loss(fake, real) * loss_cfg.lambda_l1
            return sum(terms.values()), (terms, g_stats, d_stats, fake)

        (loss_g, (g_terms, g_stats, d_stats, fake)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            state.g_params)
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)

        # D's update, on images of the updated G (OASIS generates them again, without gradient).
        fake_d, g_stats = generate(nets, g_params, g_stats, inputs, train=True, rng=k_d)
        fake_d = jax.lax.stop_gradient(fake_d)
        mask = oasis_losses.labelmix_mask(k_mix, ids, num_classes) if lambda_labelmix > 0 else None

        def d_loss_fn(d_params):
            out_fake, stats = d_apply(d_params, d_stats, fake_d)
            out_real, stats = d_apply(d_params, stats, real)
            loss, terms = oasis_losses.oasis_discriminator_loss(out_fake, out_real, ids, balancing, dontcare,
                                                                with_terms=True)
            if mask is not None:
                out_mixed, stats = d_apply(d_params, stats, oasis_losses.labelmix(mask, real, fake_d))
                terms["loss_D_labelmix"] = lambda_labelmix * oasis_losses.labelmix_loss(mask, out_mixed, out_fake,
                                                                                        out_real)
                loss = loss + terms["loss_D_labelmix"]
            return loss, (terms, stats)

        (loss_d, (d_terms, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)

        ema_params, ema_stats = state.ema_params, state.ema_stats
        if ema_params is not None:
            ema_params = oasis_losses.ema_update(ema_params, g_params, decay)
            ema_stats = oasis_losses.ema_update(ema_stats, g_stats, decay)
        new_state = state.replace(step=state.step + 1, g_params=g_params, g_stats=g_stats, g_opt=g_opt,
                                  d_params=d_params, d_stats=d_stats, d_opt=d_opt, rng=rng, ema_params=ema_params,
                                  ema_stats=ema_stats)
        lr = schedule.learning_rate(state.step, steps_per_epoch, train_cfg)
        metrics = dict(g_terms, **d_terms, loss_G=loss_g, loss_D=loss_d, lr=lr,
                       grad_norm_G=optax.global_norm(g_grads), grad_norm_D=optax.global_norm(d_grads))
        return new_state, metrics, fake

    return step_fn


def make_ema_statistics_pass(config):
    """(ema_params, ema_stats, batch, rng) -> ema_stats: one pass of the averaged G in training mode,
    which refreshes its batch-norm running statistics (momentum 0.1) and spectral norm's u and v
    from its own weights. OASIS runs 50 such passes before every evaluation and save, since the
    average of G's statistics does not describe the averaged G's activations."""
    nets = Networks(config)

    def run(ema_params, ema_stats, batch, rng):
        _, stats = generate(nets, ema_params, ema_stats, model_inputs(batch, config), train=True, rng=rng)
        return stats

    return run
