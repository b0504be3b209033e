"""OASIS's objective (Sushko et al. 2021, sec. 3.1-3.3) as pure functions, and the moving
average of G's weights.

The discriminator segments every pixel into N + 1 classes: channel 0 'fake', channel c + 1 the
semantic class c. Its loss (eq. 2) is a cross-entropy: on a real image each pixel's target is its
class, weighted by the class's inverse frequency in the batch; on a generated image every pixel's
target is 'fake', unweighted. The generator's adversarial loss (eq. 3) is the real-image term on
its own images: be segmented as the label map says. The class weights are the reference's
(losses.get_class_balancing): w_c = N*H*W / (n_present * count_c) with count_c the pixels of
class c in the whole batch and n_present the classes that occur; with a don't-care label (OASIS's
contain_dontcare_label: id 0 is 'unlabeled' in Cityscapes, 'other' in ADE20K) class 0 counts as
absent and weighs 0. Means are over every pixel, weighted or not, as torch.mean computes them.

LabelMix (sec. 3.3): one random bit per class of the batch picks, for every pixel of that class,
the real or the generated image; the discriminator's logits on the mix must equal the same mix
of its logits on the real and on the generated image (mean squared error over every logit,
weighted by lambda_labelmix in the discriminator's loss).

Logits are NHWC (..., N + 1); label ids (N, H, W) integers in [0, N).
"""

import jax
import jax.numpy as jnp
import optax


def class_balancing_weights(label_ids, num_classes: int, contain_dontcare_label: bool = True):
    """The per-pixel weights of the real term: (N, H, W) float32, w_c at every pixel of class c."""
    counts = jnp.bincount(label_ids.reshape(-1), length=num_classes).astype(jnp.float32)
    if contain_dontcare_label:
        counts = counts.at[0].set(0.0)
    present = jnp.sum(counts > 0)
    coefficients = jnp.where(counts > 0, label_ids.size / (jnp.maximum(present, 1) * jnp.maximum(counts, 1.0)), 0.0)
    return coefficients[label_ids]


def n1_targets(label_ids, for_real: bool):
    """The (N+1)-class targets: class c + 1 on a real image, 0 ('fake') on a generated one."""
    return label_ids.astype(jnp.int32) + 1 if for_real else jnp.zeros(label_ids.shape, jnp.int32)


def n1_cross_entropy(logits, label_ids, for_real: bool, balancing: bool = True, contain_dontcare_label: bool = True):
    """OASIS's losses_computer.loss: the (N+1)-class cross-entropy, mean over pixels; the real term
    weighted by class_balancing_weights (when `balancing`)."""
    logits = logits.astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, n1_targets(label_ids, for_real))
    if for_real and balancing:
        ce = ce * class_balancing_weights(label_ids, logits.shape[-1] - 1, contain_dontcare_label)
    return jnp.mean(ce)


def oasis_discriminator_loss(fake_logits, real_logits, label_ids, balancing: bool = True,
                             contain_dontcare_label: bool = True, with_terms: bool = False):
    """loss_D_fake + loss_D_real (no 1/2, as the reference sums them); LabelMix is added by the
    caller. `with_terms`: (loss, {'loss_D_fake', 'loss_D_real'})."""
    terms = {"loss_D_fake": n1_cross_entropy(fake_logits, label_ids, False, balancing, contain_dontcare_label),
             "loss_D_real": n1_cross_entropy(real_logits, label_ids, True, balancing, contain_dontcare_label)}
    loss = terms["loss_D_fake"] + terms["loss_D_real"]
    return (loss, terms) if with_terms else loss


def oasis_generator_loss(fake_logits, label_ids, balancing: bool = True, contain_dontcare_label: bool = True):
    """G's adversarial term: D's real-image loss on G's images."""
    return n1_cross_entropy(fake_logits, label_ids, True, balancing, contain_dontcare_label)


def labelmix_mask(rng, label_ids, num_classes: int):
    """One fair coin per class, shared by the batch (the reference draws one per class of the
    batch): (N, H, W, 1) float32, 1 where the real image is taken."""
    bits = jax.random.bernoulli(rng, 0.5, (num_classes,)).astype(jnp.float32)
    return bits[label_ids][..., None]


def labelmix(mask, real, fake):
    """The mixed image: real where mask is 1, generated elsewhere."""
    return mask * real + (1 - mask) * fake


def labelmix_loss(mask, mixed_logits, fake_logits, real_logits):
    """MSE(mask * D(real) + (1 - mask) * D(fake), D(mix)) over every logit; gradients reach all
    three of D's outputs, as in the reference (none of them is detached)."""
    target = mask * real_logits.astype(jnp.float32) + (1 - mask) * fake_logits.astype(jnp.float32)
    return jnp.mean(jnp.square(target - mixed_logits.astype(jnp.float32)))


def ema_update(ema, current, decay: float):
    """ema * decay + current * (1 - decay), leaf by leaf: OASIS's update_EMA, which averages
    every entry of G's state dict, the running statistics and spectral norm's u and v included.
    Leaves are kept in their dtype."""
    return jax.tree_util.tree_map(
        lambda e, c: (e.astype(jnp.float32) * decay + c.astype(jnp.float32) * (1.0 - decay)).astype(e.dtype),
        ema, current)
