"""The train step written the straightforward way, as the reference's code runs it: D runs four
times per step (on the fake and the real photo inside G's loss, and again inside D's).

make_train_step shares those passes (D(real) once, and D(fake) once without an image pool);
both update the parameters with training.step.apply_gradients;
tests/test_step_formulation.py holds the two against each other, and experiments/step_ab.py
times them side by side.
"""

import jax
import jax.numpy as jnp
import optax

from pix2pixhd_jax.models.pix2pixhd import Networks, apply_variables, generate, model_inputs
from pix2pixhd_jax.training import image_pool, losses
from pix2pixhd_jax.training.step import TrainState, apply_gradients


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
            terms = {"loss_G_GAN": losses.gan_loss(pred_fake, True, use_lsgan)}
            if not loss_cfg.no_ganFeat_loss:
                pred_real, _ = d_apply(state.d_params, real_input, state.d_stats)
                terms["loss_G_GAN_Feat"] = losses.feature_matching_loss(
                    pred_fake, pred_real, config.model.n_layers_D, loss_cfg.lambda_feat)
            if vgg_apply is not None:
                terms["loss_G_VGG"] = losses.vgg_loss(vgg_apply, vgg_variables, fake, real) * loss_cfg.lambda_feat
            if loss_cfg.lambda_l1 > 0:
                terms["loss_G_L1"] = losses.l1_loss(fake, real) * loss_cfg.lambda_l1
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

        new_state, lr, frozen = apply_gradients(state, g_grads, d_grads, steps_per_epoch, train_cfg)
        new_state = new_state.replace(g_stats=g_stats, d_stats=d_stats, rng=rng, pool=pool)
        metrics = dict(g_terms, **d_terms, loss_G=loss_g, loss_D=loss_d, lr=lr,
                       grad_norm_G=optax.global_norm(g_grads), grad_norm_D=optax.global_norm(d_grads),
                       global_generator_frozen=frozen.astype(jnp.float32))
        return new_state, metrics, fake

    return step_fn
