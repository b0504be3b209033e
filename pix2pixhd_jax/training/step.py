"""The train state and the one jitted train step (no TensorFlow here).

One step does what one iteration of the reference does: one forward pass of G
(and E); G's loss = GAN + feature matching + VGG (+ L1 for pix2pix); D's loss =
0.5 (fake + real); G and D are both updated from the same pre-update parameters.
The encoder's parameters sit with G's and share its optimizer, as in the reference.

D runs on the real photo once per step: its features are D's real loss (gradient w.r.t.
D's params through that pass's vjp) and, stop-gradient, G's feature-matching target, as in
the reference. Without an image pool D(fake) runs once too: its vjp gives G's gradient (w.r.t.
the fake image) and D's (w.r.t. its params); with the pool D's fake input differs from G's, so
it gets a pass of its own (three passes, as in the reference). With batch norm D's outputs in
training mode use the batch's statistics, so sharing a pass changes no output; the running
statistics are updated by D's fake pass, then its real pass. The reference updates them a
third time with the D(fake) pass of G's loss; this step leaves that one out, a difference
that would show only if D ran in inference mode, which nothing does (the running statistics
are saved with D, and D always runs in training mode).

Each network has one optax optimizer (`optimizers`): Adam at the reference's lr schedule
(training.schedule). In the local-enhancer stage G's is partitioned: the coarser part of G, G1
(params['generator']['global_generator']) and, with two or more enhancers, every enhancer but the
outermost, gets zero updates (and its Adam state stays at its initial value) while the epoch is
below niter_fix_global, as the reference trains only the outermost enhancer (its parameters
'model{n_local_enhancers}*') then; afterwards it trains with a fresh Adam, which is the paper's
schedule (the reference's own code never unfreezes it).
"""

import functools
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from pix2pixhd_jax.models.generator import G1
from pix2pixhd_jax.models.pix2pixhd import Networks, apply_variables, generate, model_inputs
from pix2pixhd_jax.training import image_pool, losses, schedule


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    g_params: Any  # {'generator': ..., 'encoder': ...}
    g_stats: Any  # batch-norm statistics, same keys ({} entries with instance norm)
    g_opt: Any  # the state of optimizers()'s G optimizer
    d_params: Any
    d_stats: Any
    d_opt: Any  # the state of optimizers()'s D optimizer
    rng: jax.Array
    pool: Optional[Any] = None


FIXED, TRAINED = "fixed", "trained"  # G's parts in the local stage: held for niter_fix_global epochs, or not


def fixed_stage(gen_params) -> list:
    """The generator's parts that the local stage holds fixed for niter_fix_global epochs: G1
    and every enhancer but the outermost (enhancer_N, at full resolution)."""
    if G1 not in gen_params:
        return []
    enhancers = sorted((k for k in gen_params if k.startswith("enhancer_")), key=lambda k: int(k.split("_")[1]))
    return [G1] + enhancers[:-1]


def stage_labels(g_params):
    """FIXED or TRAINED for every leaf of a generator(+encoder) tree (or its gradient)."""
    fixed = set(fixed_stage(g_params["generator"]))

    def label(path, _):
        return FIXED if path[0].key == "generator" and path[1].key in fixed else TRAINED

    return jax.tree_util.tree_map_with_path(label, g_params)


def optimizers(train_cfg, steps_per_epoch: int):
    """(G's (and E's) optimizer, D's): Adam, torch.optim.Adam's defaults besides the reference's
    betas (eps 1e-8, no weight decay), at the schedule's lr. G's fixed stage gets zero updates
    and keeps its Adam state while G1 is frozen, then trains with that Adam, fresh."""
    moments = optax.scale_by_adam(b1=train_cfg.beta1, b2=train_cfg.beta2, eps=1e-8)

    def trains_fixed(step):
        return jnp.logical_not(schedule.global_generator_frozen(step, steps_per_epoch, train_cfg))

    by_stage = optax.partition({FIXED: optax.transforms.conditionally_mask(moments, trains_fixed), TRAINED: moments},
                               stage_labels)
    lr = optax.scale_by_learning_rate(schedule.learning_rate_schedule(steps_per_epoch, train_cfg))
    clip = schedule.gradient_clipping(train_cfg)
    return optax.chain(*clip, by_stage, lr), optax.chain(*clip, moments, lr)


def init_train_state(nets: Networks, rng, height: int, width: int, image_size=None) -> TrainState:
    """A fresh train state. The networks are initialised on a height x width probe (their
    parameters do not depend on the size); the image pool, when the config has one, holds
    images of `image_size` (height, width), by default the probe's."""
    config = nets.config
    k_init, k_state = jax.random.split(rng)
    g_params, g_stats, d_params, d_stats = nets.init(k_init, height, width)
    # An optimizer's state does not depend on the schedule's length: any steps_per_epoch builds it.
    g_tx, d_tx = optimizers(config.train, steps_per_epoch=1)
    pool = None
    if config.train.pool_size > 0:
        pool_h, pool_w = image_size or (height, width)
        pool = image_pool.init_pool(config.train.pool_size, (pool_h, pool_w, nets.d_in))
    return TrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_stats=g_stats, g_opt=g_tx.init(g_params),
                      d_params=d_params, d_stats=d_stats, d_opt=d_tx.init(d_params), rng=k_state, pool=pool)


def apply_gradients(state: TrainState, g_grads, d_grads, steps_per_epoch: int, train_cfg):
    """One optimizer step of G (+E) and D from the same pre-update parameters. Returns (state with
    the new parameters, optimizer states and step; the step's lr; whether G1 was frozen)."""
    g_tx, d_tx = optimizers(train_cfg, steps_per_epoch)
    g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
    d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
    new_state = state.replace(step=state.step + 1, g_params=optax.apply_updates(state.g_params, g_updates),
                              g_opt=g_opt, d_params=optax.apply_updates(state.d_params, d_updates), d_opt=d_opt)
    lr = schedule.learning_rate(state.step, steps_per_epoch, train_cfg)
    return new_state, lr, schedule.global_generator_frozen(state.step, steps_per_epoch, train_cfg)


def step_result(state: TrainState, g_grads, d_grads, steps_per_epoch: int, train_cfg, losses_, **carried):
    """A step's (new state, metrics) from its gradients (apply_gradients), its losses (`losses_`:
    the loss terms, loss_G and loss_D by name) and the fields it carries to the next step
    (g_stats, d_stats, rng, pool)."""
    new_state, lr, frozen = apply_gradients(state, g_grads, d_grads, steps_per_epoch, train_cfg)
    metrics = dict(losses_, lr=lr, grad_norm_G=optax.global_norm(g_grads), grad_norm_D=optax.global_norm(d_grads),
                   global_generator_frozen=frozen.astype(jnp.float32))
    return new_state.replace(**carried), metrics


def make_train_step(config, steps_per_epoch: int, vgg_apply=None):
    """The pure train step: (state, batch, vgg_variables) -> (state, metrics, fake).

    `batch` is what the input pipeline carries (label ids, instance ids, the photo's integer
    levels: data/pipeline.py); the one-hot labels, boundaries and [-1, 1] photo are built here.

    `vgg_apply` is VGG19Features.apply when the VGG loss is on (its variables come in as an
    argument, not as constants baked into the program).
    """
    nets = Networks(config)
    loss_cfg, train_cfg = config.loss, config.train
    use_lsgan = not loss_cfg.no_lsgan

    def step_fn(state: TrainState, batch, vgg_variables):
        rng, k_drop, k_pool = jax.random.split(state.rng, 3)
        inputs = model_inputs(batch, config)  # ids and levels in, the networks' inputs built here
        # G's and D's inputs in the compute dtype: their first convs would cast them there anyway
        # (the one-hot labels and boundaries are exact in bf16), and at 2048x1024 the label map
        # alone is 300 MB in float32.
        dtype = nets.G.dtype
        label, real = inputs["label"].astype(dtype), inputs["image"]
        inputs = dict(inputs, label=label)

        def d_apply(params, image, stats):
            """D(label, image) in training mode -> (features per scale, new batch-norm stats)."""
            return apply_variables(nets.D, params, stats, jnp.concatenate([label, image.astype(dtype)], axis=-1),
                                   train=True)

        # G (and E) forward; g_vjp turns dL_G/d fake into G's (and E's) gradient.
        fake, g_vjp, g_stats = jax.vjp(
            lambda p: generate(nets, p, state.g_stats, inputs, train=True, rng=k_drop), state.g_params, has_aux=True)

        # D(fake) with D's pre-update params: G's GAN and feature-matching losses read it (its
        # vjp w.r.t. the fake image gives G's gradient) and, without an image pool, D's fake
        # loss too (its vjp w.r.t. D's params gives D's gradient): one forward pass for both.
        pred_fake, fake_vjp, stats = jax.vjp(lambda p, f: d_apply(p, f, state.d_stats), state.d_params, fake,
                                             has_aux=True)
        pool = state.pool
        if pool is None:
            pred_fake_d, d_fake_vjp = pred_fake, fake_vjp
        else:  # D's fake is (half the time) an older one from the pool: a pass of its own.
            fake_input = jax.lax.stop_gradient(jnp.concatenate([label, fake], axis=-1))
            pool, fake_input = image_pool.query(pool, fake_input, k_pool)
            pred_fake_d, d_fake_vjp, stats = jax.vjp(
                lambda p: apply_variables(nets.D, p, state.d_stats, fake_input, train=True), state.d_params, has_aux=True)
        # D(real), once: D's real loss (vjp w.r.t. its params) and G's feature-matching target.
        # Batch-norm running statistics go through D's fake pass, then this one (in training mode
        # D's outputs do not depend on them).
        pred_real, real_vjp, d_stats = jax.vjp(lambda p: d_apply(p, real, stats), state.d_params, has_aux=True)

        def g_loss_fn(fake, pred_fake):
            # VGG in two passes: the real photo's, under stop_gradient, keeps nothing for the backward pass.
            terms = losses.generator_loss_terms(loss_cfg, config.model.n_layers_D, pred_fake, pred_real, fake, real,
                                                vgg_apply, vgg_variables, vgg_batched=False)
            return sum(terms.values()), terms

        (loss_g, g_terms), (dg_fake, dg_pred) = jax.value_and_grad(g_loss_fn, argnums=(0, 1), has_aux=True)(
            fake, pred_fake)
        (g_grads,) = g_vjp(dg_fake + fake_vjp(dg_pred)[1])

        d_loss_fn = functools.partial(losses.discriminator_loss, use_lsgan=use_lsgan, with_terms=True)
        (loss_d, d_terms), (dd_fake, dd_real) = jax.value_and_grad(d_loss_fn, argnums=(0, 1), has_aux=True)(
            pred_fake_d, pred_real)
        d_grads = jax.tree_util.tree_map(jnp.add, d_fake_vjp(dd_fake)[0], real_vjp(dd_real)[0])

        new_state, metrics = step_result(state, g_grads, d_grads, steps_per_epoch, train_cfg,
                                         dict(g_terms, **d_terms, loss_G=loss_g, loss_D=loss_d),
                                         g_stats=g_stats, d_stats=d_stats, rng=rng, pool=pool)
        return new_state, metrics, fake

    return step_fn
