"""OASIS's losses, LabelMix and the generator's moving average: hand computations, the
reference's formulas (torch_spade.py restates them in torch; with OASIS_REF naming a checkout of
boschresearch/OASIS, its own losses_computer too), and the properties they exist for."""

import math
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pixhd_jax.training import oasis_losses as L


def test_class_weights_by_hand():
    ids = jnp.array([[[0, 1, 1], [2, 2, 2]]])  # 6 pixels: one of class 0, two of 1, three of 2
    # Don't-care label: class 0 weighs 0, two classes present: w1 = 6 / (2 * 2), w2 = 6 / (2 * 3).
    np.testing.assert_allclose(L.class_balancing_weights(ids, 4), [[[0, 1.5, 1.5], [1, 1, 1]]])
    # Without: three classes present, w0 = 6 / 3, w1 = 6 / 6, w2 = 6 / 9.
    np.testing.assert_allclose(L.class_balancing_weights(ids, 4, contain_dontcare_label=False),
                               [[[2, 1, 1], [2 / 3, 2 / 3, 2 / 3]]], rtol=1e-6)


def test_class_weights_give_every_present_class_the_same_total_and_count_the_whole_batch():
    ids = jnp.asarray(np.random.default_rng(0).choice(5, p=[0.05, 0.6, 0.3, 0.05, 0.0], size=(3, 16, 16)))
    w = np.asarray(L.class_balancing_weights(ids, 6))
    totals = [w[np.asarray(ids) == c].sum() for c in range(1, 4)]
    # Each present class adds N*H*W / n_present to the weighted sum, however rare it is.
    np.testing.assert_allclose(totals, [ids.size / 3] * 3, rtol=1e-5)
    assert w[np.asarray(ids) == 0].sum() == 0
    # The counts are the batch's: one image alone weighs its classes by its own counts.
    assert not np.allclose(np.asarray(L.class_balancing_weights(ids[:1], 6)), w[:1])


def test_n1_cross_entropy_by_hand():
    ids = jnp.array([[[1, 2]]])  # classes 1 and 2 of 3: each weighs 2 / (2 * 1) = 1
    logits = jnp.zeros((1, 1, 2, 4)).at[0, 0, 0, 2].set(math.log(3.0))
    # Pixel 0: target channel 2 has p = 3/6; pixel 1 (all logits 0): target channel 3 has p = 1/4.
    real = L.n1_cross_entropy(logits, ids, for_real=True)
    np.testing.assert_allclose(real, (-math.log(0.5) - math.log(1 / 4)) / 2, rtol=1e-6)
    # Fake: channel 0 at both pixels: p = 1/6 and 1/4.
    np.testing.assert_allclose(L.n1_cross_entropy(logits, ids, for_real=False),
                               (-math.log(1 / 6) - math.log(1 / 4)) / 2, rtol=1e-6)
    # D's loss is the sum; G's is the real term on G's images.
    np.testing.assert_allclose(L.oasis_discriminator_loss(logits, logits, ids),
                               L.n1_cross_entropy(logits, ids, False) + real, rtol=1e-6)
    np.testing.assert_allclose(L.oasis_generator_loss(logits, ids), real, rtol=1e-6)


@pytest.mark.parametrize("balancing, dontcare", [(True, True), (True, False), (False, True)])
def test_n1_cross_entropy_is_the_references_formula(balancing, dontcare):
    torch = pytest.importorskip("torch")
    import torch_spade as ref

    rng = np.random.default_rng(1)
    c = 7
    ids = rng.choice(c, p=[0.1, 0.4, 0.2, 0.1, 0.1, 0.1, 0.0], size=(2, 8, 12))
    logits = rng.normal(0, 2, size=(2, 8, 12, c + 1)).astype(np.float32)
    onehot = torch.from_numpy(np.eye(c, dtype=np.float32)[ids].transpose(0, 3, 1, 2))
    t_logits = torch.from_numpy(logits.transpose(0, 3, 1, 2).copy())
    for for_real in (True, False):
        ours = L.n1_cross_entropy(jnp.asarray(logits), jnp.asarray(ids), for_real, balancing, dontcare)
        theirs = ref.n1_loss(t_logits, onehot, for_real, balancing, dontcare)
        np.testing.assert_allclose(ours, theirs.item(), rtol=1e-5)


def test_n1_gradient_pushes_real_pixels_to_their_class_and_fake_pixels_to_fake():
    ids = jnp.array([[[1, 3]]])
    logits = jnp.zeros((1, 1, 2, 5))
    g_real = jax.grad(lambda x: L.n1_cross_entropy(x, ids, True))(logits)
    g_fake = jax.grad(lambda x: L.n1_cross_entropy(x, ids, False))(logits)
    assert g_real[0, 0, 0, 2] < 0 and g_real[0, 0, 1, 4] < 0  # descent raises class c + 1
    assert g_fake[0, 0, 0, 0] < 0 and g_fake[0, 0, 1, 0] < 0  # and channel 0 for generated pixels
    assert float(jnp.sum(g_real[..., 0])) > 0


def test_labelmix_mask_is_one_coin_per_class_across_the_batch():
    ids = jnp.asarray(np.random.default_rng(2).integers(0, 6, size=(2, 10, 10)))
    seen = set()
    for seed in range(12):
        mask = np.asarray(L.labelmix_mask(jax.random.PRNGKey(seed), ids, 6))
        assert mask.shape == (2, 10, 10, 1) and set(np.unique(mask)) <= {0.0, 1.0}
        for c in range(6):
            values = np.unique(mask[..., 0][np.asarray(ids) == c])
            assert len(values) == 1  # the whole region of a class, in every image of the batch
        seen.add(tuple(mask[..., 0][np.asarray(ids) == c][0] for c in range(6)))
    assert len(seen) > 6  # the coins differ between draws and between classes


def test_labelmix_mixes_real_and_fake_by_the_mask_and_its_loss_by_hand():
    mask = jnp.array([[[[1.0], [0.0]]]])
    real, fake = jnp.full((1, 1, 2, 3), 2.0), jnp.full((1, 1, 2, 3), -1.0)
    np.testing.assert_array_equal(L.labelmix(mask, real, fake)[0, 0, :, 0], [2.0, -1.0])
    real_logits, fake_logits = jnp.ones((1, 1, 2, 2)), jnp.zeros((1, 1, 2, 2))
    mixed_logits = jnp.array([[[[1.0, 3.0], [0.5, 0.0]]]])
    # target [[1, 1], [0, 0]]: squared errors 0, 4, 0.25, 0 over 4 logits.
    np.testing.assert_allclose(L.labelmix_loss(mask, mixed_logits, fake_logits, real_logits), 4.25 / 4)


def test_labelmix_loss_is_zero_for_a_pixelwise_discriminator_and_not_for_one_that_sees_context():
    rng = np.random.default_rng(3)
    ids = jnp.asarray(np.kron(rng.integers(0, 4, size=(1, 4, 4)), np.ones((1, 4, 4), np.int64)))
    real = jnp.asarray(rng.uniform(-1, 1, size=(1, 16, 16, 3)).astype(np.float32))
    fake = jnp.asarray(rng.uniform(-1, 1, size=(1, 16, 16, 3)).astype(np.float32))
    mask = L.labelmix_mask(jax.random.PRNGKey(0), ids, 4)
    assert 0 < float(mask.mean()) < 1
    w = jnp.asarray(rng.normal(size=(3, 5)).astype(np.float32))

    def pixelwise(x):
        return x @ w

    def context(x):
        return pixelwise(x + jnp.roll(x, 3, axis=2))

    for d, zero in ((pixelwise, True), (context, False)):
        loss = float(L.labelmix_loss(mask, d(L.labelmix(mask, real, fake)), d(fake), d(real)))
        assert (loss < 1e-10) == zero, loss


def test_ema_update_by_hand_and_its_geometric_approach():
    ema = {"w": jnp.array([1.0, 0.0]), "stats": {"u": jnp.array([0.0])}}
    current = {"w": jnp.array([3.0, 1.0]), "stats": {"u": jnp.array([1.0])}}
    out = L.ema_update(ema, current, 0.9)
    np.testing.assert_allclose(out["w"], [1.2, 0.1], rtol=1e-6)
    np.testing.assert_allclose(out["stats"]["u"], [0.1], rtol=1e-6)
    for _ in range(9):
        out = L.ema_update(out, current, 0.9)
    np.testing.assert_allclose(out["w"], [3.0 - 2.0 * 0.9 ** 10, 1.0 - 0.9 ** 10], rtol=1e-5)
    bf = L.ema_update({"w": jnp.ones(2, jnp.bfloat16)}, {"w": jnp.zeros(2, jnp.bfloat16)}, 0.5)
    assert bf["w"].dtype == jnp.bfloat16


@pytest.mark.skipif(not os.environ.get("OASIS_REF"), reason="OASIS_REF names no checkout of boschresearch/OASIS")
def test_losses_are_oasis_own_losses_computer():
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.environ["OASIS_REF"])
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))
    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]}
    try:
        import importlib

        losses = importlib.import_module("models.losses")
    finally:
        sys.path.remove(os.environ["OASIS_REF"])
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    rng = np.random.default_rng(4)
    c = 6
    ids = rng.choice(c, p=[0.1, 0.5, 0.2, 0.1, 0.1, 0.0], size=(2, 8, 12))
    logits = [rng.normal(0, 2, size=(2, 8, 12, c + 1)).astype(np.float32) for _ in range(3)]
    onehot = torch.from_numpy(np.eye(c, dtype=np.float32)[ids].transpose(0, 3, 1, 2))
    t = [torch.from_numpy(x.transpose(0, 3, 1, 2).copy()) for x in logits]
    mask = (rng.random(size=(2, 8, 12, 1)) < 0.5).astype(np.float32)
    for balancing, dontcare in ((True, True), (True, False), (False, False)):
        opt = types.SimpleNamespace(no_balancing_inloss=not balancing, contain_dontcare_label=dontcare, gpu_ids="-1",
                                    no_labelmix=False)
        computer = losses.losses_computer(opt)
        for for_real in (True, False):
            np.testing.assert_allclose(L.n1_cross_entropy(jnp.asarray(logits[0]), jnp.asarray(ids), for_real, balancing,
                                                          dontcare), computer.loss(t[0], onehot, for_real).item(),
                                       rtol=1e-5)
        theirs = computer.loss_labelmix(torch.from_numpy(mask.transpose(0, 3, 1, 2).copy()), t[2], t[1], t[0])
        ours = L.labelmix_loss(jnp.asarray(mask), jnp.asarray(logits[2]), jnp.asarray(logits[1]), jnp.asarray(logits[0]))
        np.testing.assert_allclose(ours, theirs.item(), rtol=1e-5)
