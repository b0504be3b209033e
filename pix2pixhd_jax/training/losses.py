"""The objective (paper eq. 4 and sec. 3.2-3.3) as pure functions.

Discriminator outputs are nested lists, `preds[scale][layer]`, finest scale first;
the GAN terms read the last layer of every scale and SUM over scales, as the
reference's GANLoss does; feature matching reads every layer but the last. The VGG
term compares VGG19's relu1_1 ... relu5_1 taps with the reference's weights.
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

# The reference's VGGLoss weights, one per tap (relu1_1 ... relu5_1).
VGG_LOSS_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _last_layers(preds):
    return [scale[-1] for scale in preds]


def gan_loss(preds, target_is_real: bool, use_lsgan: bool = True):
    """LSGAN (MSE against 1 or 0) or vanilla GAN (BCE on logits), summed over scales."""
    total = 0.0
    for pred in _last_layers(preds):
        pred = pred.astype(jnp.float32)
        target = jnp.full_like(pred, 1.0 if target_is_real else 0.0)
        if use_lsgan:
            total = total + jnp.mean(jnp.square(pred - target))
        else:
            total = total + jnp.mean(optax.sigmoid_binary_cross_entropy(pred, target))
    return total


def feature_matching_loss(fake_preds, real_preds, n_layers_D: int, lambda_feat: float):
    """sum_i sum_{j<last} (1/num_D) (4/(n_layers_D+1)) lambda_feat L1(D_i^j(fake), D_i^j(real)).

    Real features are treated as constants (the reference's .detach()).
    """
    num_D = len(fake_preds)
    weight = (1.0 / num_D) * (4.0 / (n_layers_D + 1)) * lambda_feat
    total = 0.0
    for fake_scale, real_scale in zip(fake_preds, real_preds):
        for fake, real in zip(fake_scale[:-1], real_scale[:-1]):
            real = jax.lax.stop_gradient(real).astype(jnp.float32)
            total = total + weight * jnp.mean(jnp.abs(fake.astype(jnp.float32) - real))
    return total


def l1_loss(fake, real):
    """Mean absolute error: pix2pix's reconstruction term (times lambda_l1 = 100 by the caller)."""
    return jnp.mean(jnp.abs(fake.astype(jnp.float32) - real.astype(jnp.float32)))


def discriminator_loss(fake_preds, real_preds, use_lsgan: bool = True, with_terms: bool = False):
    """The reference's loss_D = 0.5 * (loss_D_fake + loss_D_real); fake_preds must come from
    a stop-gradient generator output. `with_terms`: (loss_D, {'loss_D_fake', 'loss_D_real'})."""
    terms = {"loss_D_fake": gan_loss(fake_preds, False, use_lsgan), "loss_D_real": gan_loss(real_preds, True, use_lsgan)}
    loss = 0.5 * (terms["loss_D_fake"] + terms["loss_D_real"])
    return (loss, terms) if with_terms else loss


def vgg_loss(vgg_apply: Callable, variables, fake, real,
             weights: Sequence[float] = VGG_LOSS_WEIGHTS, batched: bool = True):
    """sum_i w_i * mean|F_i(fake) - stop_gradient(F_i(real))|, without the lambda_feat factor.

    ``vgg_apply(variables, x)`` returns the list of taps (e.g. ``VGG19Features(...).apply``).
    ``batched`` runs fake and real through one VGG call (concatenated on the batch axis);
    the value is the same either way. No gradient flows to ``real`` or to the VGG weights.
    One-channel images (data.output_nc=1) are repeated to three channels, the gray image VGG19
    sees as RGB. Returns a float32 scalar.
    """
    variables = jax.lax.stop_gradient(variables)
    real = jax.lax.stop_gradient(real)
    if fake.shape[-1] == 1:
        fake, real = jnp.repeat(fake, 3, axis=-1), jnp.repeat(real, 3, axis=-1)
    if batched:
        n = fake.shape[0]
        taps = vgg_apply(variables, jnp.concatenate([fake, real.astype(fake.dtype)], axis=0))
        pairs = [(t[:n], t[n:]) for t in taps]
    else:
        pairs = list(zip(vgg_apply(variables, fake), vgg_apply(variables, real)))
    if len(pairs) != len(weights):
        raise ValueError(f"vgg_loss: {len(weights)} weights for {len(pairs)} VGG taps")
    total = jnp.zeros((), jnp.float32)
    for w, (f, r) in zip(weights, pairs):
        r = jax.lax.stop_gradient(r)
        total = total + w * jnp.mean(jnp.abs(f.astype(jnp.float32) - r.astype(jnp.float32)))
    return total


def generator_loss_terms(loss_cfg, n_layers_D: int, pred_fake, pred_real, fake, real, vgg_apply=None,
                         vgg_variables=None, vgg_batched: bool = True) -> dict:
    """G's loss terms by name (paper eq. 4, and the reference's VGG and pix2pix's L1 options):
    the GAN term on D's predictions of the fake; feature matching against D's features of the
    real photo (constants), unless loss.no_ganFeat_loss (then pred_real may be None); the VGG
    term when `vgg_apply` is given; L1 when loss.lambda_l1 > 0. G's loss is their sum."""
    use_lsgan = not loss_cfg.no_lsgan
    terms = {"loss_G_GAN": gan_loss(pred_fake, True, use_lsgan)}
    if not loss_cfg.no_ganFeat_loss:
        terms["loss_G_GAN_Feat"] = feature_matching_loss(pred_fake, pred_real, n_layers_D, loss_cfg.lambda_feat)
    if vgg_apply is not None:
        terms["loss_G_VGG"] = vgg_loss(vgg_apply, vgg_variables, fake, real, batched=vgg_batched) * loss_cfg.lambda_feat
    if loss_cfg.lambda_l1 > 0:
        terms["loss_G_L1"] = l1_loss(fake, real) * loss_cfg.lambda_l1
    return terms
