"""train.remat: every policy computes the same outputs and gradients with the same parameters,
and the backward pass keeps less the more a policy recomputes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax.errors import ConfigError
from pix2pixhd_jax.models import layers
from pix2pixhd_jax.models.layers import remat_policy
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.models.vgg19 import VGG19Features
from pix2pixhd_jax.weights.filled import fill_like

POLICIES = ("none", "blocks", "layers", "full", "dots_saveable")
BATCH = 2
SMALL = ("model.ngf=4", "model.ndf=4", "model.n_downsample_global=2", "model.n_blocks_global=2", "model.num_D=2",
         "model.n_layers_D=2", "data.label_nc=6", "model.instance_feat=True", "model.nef=4", "model.n_downsample_E=2")
LOCAL = ("model.netG=local", "model.n_local_enhancers=1", "model.n_blocks_local=1")


def kept_bytes(fn, *args):
    """Bytes of activations the backward pass of fn keeps: the residuals inside jax.vjp's
    pullback (traced, not run) of the batch's shape (BATCH, H, W, C); no kernel has BATCH rows."""
    pullback = jax.eval_shape(lambda a: jax.vjp(fn, *a)[1], args)
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(pullback)
               if x.ndim == 4 and x.shape[0] == BATCH)


def networks_and_losses(policy, local=False):
    """G's and D's parameters' shapes (traced, not compiled) and a loss of each."""
    config = load_test_config(*SMALL, *(LOCAL if local else ()), f"train.remat={policy}")
    nets = Networks(config)
    g_params, g_stats, d_params, d_stats = jax.eval_shape(lambda r: nets.init(r, 16, 16), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (BATCH, 16, 16, nets.g_in - config.model.feat_num)), jnp.float32)
    photo = jnp.asarray(rng.uniform(-1, 1, (BATCH, 16, 16, 3)), jnp.float32)
    inst = jnp.asarray(np.kron(rng.integers(0, 5, (BATCH, 2, 2)), np.ones((1, 8, 8), np.int64)), jnp.int32)

    def g_loss(p):
        feats = nets.E.apply({"params": p["encoder"]}, photo, inst, train=True)
        fake = nets.G.apply({"params": p["generator"]}, jnp.concatenate([x, feats], -1), train=True)
        return jnp.sum(jnp.square(fake.astype(jnp.float32)))

    def d_loss(p):
        preds = nets.D.apply({"params": p}, jnp.concatenate([x, photo], -1), train=True)
        return sum(jnp.sum(jnp.square(f.astype(jnp.float32))) for scale in preds for f in scale)

    return (g_params, g_loss), (d_params, d_loss)


# 'full' takes every wrapper 'blocks' and 'layers' take (layer_remat, block_remat); the policy
# name takes jax's policy path. The local enhancer's G holds the global generator's layers and
# its own (G1 and the enhancer branch with the final conv), so G is checked there, with E.
@pytest.mark.parametrize("net, local, policies", [("G", True, ("none", "full")),
                                                  ("D", False, ("none", "full", "dots_saveable"))])
def test_every_policy_gives_the_same_parameters_outputs_and_gradients(net, local, policies):
    # Every policy's init is traced (shapes), not compiled; the gradients are taken at one set of
    # random parameters of that shape.
    results, values = {}, None
    for policy in policies:
        g, d = networks_and_losses(policy, local)
        shapes, loss = g if net == "G" else d
        if values is None:
            values = fill_like(shapes, seed=1)
        results[policy] = (shapes, jax.jit(jax.value_and_grad(loss))(values))
    ref = results["none"]
    for policy, (shapes, got) in results.items():
        assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(ref[0]), policy
        assert [x.shape for x in jax.tree_util.tree_leaves(shapes)] == [x.shape for x in jax.tree_util.tree_leaves(ref[0])]
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref[1])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=policy)


def test_recomputing_keeps_less_for_the_backward_pass(monkeypatch):
    # The test's blocks are 16 channels wide: 'layers' keeps the blocks' insides above 8.
    monkeypatch.setattr(layers, "WIDE_BLOCK", 8)
    kept = {}
    for policy in POLICIES:
        (g_params, g_loss), (d_params, d_loss) = networks_and_losses(policy)
        kept[policy] = (kept_bytes(g_loss, g_params), kept_bytes(d_loss, d_params))
    assert kept["full"][0] < kept["layers"][0] < kept["none"][0]
    assert kept["full"][0] < kept["dots_saveable"][0] < kept["none"][0]
    assert kept["blocks"][0] < kept["none"][0]
    # The blocks' share: what 'blocks' saves over 'none' is what 'layers' keeps over 'full'.
    assert kept["layers"][0] - kept["full"][0] == pytest.approx(kept["none"][0] - kept["blocks"][0], rel=0.1)
    assert kept["full"][1] == kept["layers"][1] < kept["none"][1]  # D has no residual blocks
    assert kept["full"][0] < 0.6 * kept["none"][0]


def test_vgg_keeps_one_tensor_per_layer_under_full():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (BATCH, 16, 16, 3)), jnp.float32)
    out, variables = {}, None
    for policy in ("none", "full"):
        vgg = VGG19Features(remat=policy)
        if variables is None:  # random weights of VGG19's shapes, made without running its init
            variables = fill_like(jax.eval_shape(vgg.init, jax.random.PRNGKey(0), x), seed=1)
        loss = lambda v, y: sum(jnp.mean(t) for t in vgg.apply(v, y))  # noqa: E731
        out[policy] = (*jax.jit(jax.value_and_grad(loss, 1))(variables, x), kept_bytes(loss, variables, x))
    np.testing.assert_allclose(out["full"][0], out["none"][0], rtol=1e-6)
    np.testing.assert_allclose(out["full"][1], out["none"][1], rtol=1e-5, atol=1e-7)
    assert out["full"][2] < 0.6 * out["none"][2]


def test_policy_names_and_the_old_booleans():
    assert remat_policy(True) == remat_policy("true") == "blocks"
    assert remat_policy(False) == remat_policy("false") == remat_policy(None) == "none"
    assert remat_policy("dots_with_no_batch_dims_saveable") == "dots_with_no_batch_dims_saveable"
    with pytest.raises(ValueError, match="save_only_these_names"):  # a factory, not a policy
        remat_policy("save_only_these_names")
    with pytest.raises(ConfigError, match=r"train.remat='most'.*none, blocks, layers, full"):
        Networks(load_test_config("train.remat=most"))
