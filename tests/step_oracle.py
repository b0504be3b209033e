"""The train step written the straightforward way, as the reference's code runs it: D runs four
times per step (on the fake and the real photo inside G's loss, and again inside D's).

make_train_step shares those passes (D(real) once, and D(fake) once without an image pool);
both update the parameters with training.step.step_result (and share G's loss terms,
training.losses.generator_loss_terms);
tests/test_step_formulation.py holds the two against each other, and experiments/step_ab.py
times them side by side.
"""

import jax
import jax.numpy as jnp

from pix2pixhd_jax.models.pix2pixhd import Networks, apply_variables, generate, model_inputs
from pix2pixhd_jax.training import image_pool, losses
from pix2pixhd_jax.training.step import TrainState, step_result


def four_pass_step(config, steps_per_epoch: int, vgg_apply=None):
    """The train step with D run four times, as the reference's code runs it."""
    nets = Networks(config)
    loss_cfg, train_cfg = config.loss, config.train
    use_lsgan = not loss_cfg.no_lsgan

    def step_fn(state: TrainState, batch, vgg_variables):
        rng, k_drop, k_pool = jax.random.split(state.rng, 3)
        inputs = model_inputs(batch, config)
        label, real = inputs["label"], inputs["image"]
        real_input = jnp.concatenate([label, real], axis=-1)

        def d_apply(params, x, stats):
            return apply_variables(nets.D, params, stats, x, train=True)

        def g_loss_fn(g_params):
            fake, g_stats = generate(nets, g_params, state.g_stats, inputs, train=True, rng=k_drop)
            pred_fake, _ = d_apply(state.d_params, jnp.concatenate([label, fake], axis=-1), state.d_stats)
            pred_real = None if loss_cfg.no_ganFeat_loss else d_apply(state.d_params, real_input, state.d_stats)[0]
            terms = losses.generator_loss_terms(loss_cfg, config.model.n_layers_D, pred_fake, pred_real, fake, real,
                                                vgg_apply, vgg_variables)
            return sum(terms.values()), (fake, g_stats, terms)

        (loss_g, (fake, g_stats, g_terms)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)

        fake_input = jax.lax.stop_gradient(jnp.concatenate([label, fake], axis=-1))
        pool = state.pool
        if pool is not None:
            pool, fake_input = image_pool.query(pool, fake_input, k_pool)

        def d_loss_fn(d_params):
            pred_fake, stats = d_apply(d_params, fake_input, state.d_stats)
            pred_real, stats = d_apply(d_params, real_input, stats)
            fake_loss = losses.gan_loss(pred_fake, False, use_lsgan)
            real_loss = losses.gan_loss(pred_real, True, use_lsgan)
            return 0.5 * (fake_loss + real_loss), (stats, {"loss_D_fake": fake_loss, "loss_D_real": real_loss})

        (loss_d, (d_stats, d_terms)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)

        new_state, metrics = step_result(state, g_grads, d_grads, steps_per_epoch, train_cfg,
                                         dict(g_terms, **d_terms, loss_G=loss_g, loss_D=loss_d),
                                         g_stats=g_stats, d_stats=d_stats, rng=rng, pool=pool)
        return new_state, metrics, fake

    return step_fn
