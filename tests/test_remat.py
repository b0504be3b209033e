"""train.remat: every policy computes the same outputs and gradients with the same parameters,
and the backward pass keeps less the more a policy recomputes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax.errors import ConfigError
from pix2pixhd_jax.models.layers import remat_policy
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.models.vgg19 import VGG19Features

POLICIES = ("none", "blocks", "full", "dots_saveable")
SMALL = ("model.ngf=4", "model.ndf=4", "model.n_downsample_global=2", "model.n_blocks_global=2", "model.num_D=2",
         "model.n_layers_D=2", "data.label_nc=6", "model.instance_feat=True", "model.nef=4", "model.n_downsample_E=2")
LOCAL = ("model.netG=local", "model.n_local_enhancers=1", "model.n_blocks_local=1")


def kept_bytes(fn, *args):
    """Bytes the backward pass of fn keeps: the residuals inside jax.vjp's pullback."""
    _, pullback = jax.vjp(fn, *args)
    arg_ids = {id(x) for x in jax.tree_util.tree_leaves(args)}
    return sum(x.nbytes for x in jax.tree_util.tree_leaves(pullback) if id(x) not in arg_ids)


def networks_and_losses(policy, local=False):
    config = load_test_config(*SMALL, *(LOCAL if local else ()), f"train.remat={policy}")
    nets = Networks(config)
    g_params, g_stats, d_params, d_stats = nets.init(jax.random.PRNGKey(0), 32, 32)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, nets.g_in - config.model.feat_num)), jnp.float32)
    photo = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    inst = jnp.asarray(np.kron(rng.integers(0, 5, (2, 4, 4)), np.ones((1, 8, 8), np.int64)), jnp.int32)

    def g_loss(p):
        feats = nets.E.apply({"params": p["encoder"]}, photo, inst, train=True)
        fake = nets.G.apply({"params": p["generator"]}, jnp.concatenate([x, feats], -1), train=True)
        return jnp.sum(jnp.square(fake.astype(jnp.float32)))

    def d_loss(p):
        preds = nets.D.apply({"params": p}, jnp.concatenate([x, photo], -1), train=True)
        return sum(jnp.sum(jnp.square(f.astype(jnp.float32))) for scale in preds for f in scale)

    return (g_params, g_loss), (d_params, d_loss)


@pytest.mark.parametrize("local", [False, True])
def test_every_policy_gives_the_same_parameters_outputs_and_gradients(local):
    results = {}
    for policy in POLICIES:
        (g_params, g_loss), (d_params, d_loss) = networks_and_losses(policy, local)
        results[policy] = (g_params, d_params, jax.jit(jax.value_and_grad(g_loss))(g_params),
                           jax.jit(jax.value_and_grad(d_loss))(d_params))
    ref = results["none"]
    for policy, got in results.items():
        assert jax.tree_util.tree_structure(got[0]) == jax.tree_util.tree_structure(ref[0]), policy
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=policy)


def test_recomputing_keeps_less_for_the_backward_pass():
    kept = {}
    for policy in POLICIES:
        (g_params, g_loss), (d_params, d_loss) = networks_and_losses(policy)
        kept[policy] = (kept_bytes(g_loss, g_params), kept_bytes(d_loss, d_params))
    assert kept["full"][0] < kept["dots_saveable"][0] < kept["none"][0]
    assert kept["blocks"][0] < kept["none"][0]
    assert kept["full"][1] < kept["dots_saveable"][1] < kept["none"][1]
    assert kept["full"][0] < 0.6 * kept["none"][0]


def test_vgg_keeps_one_tensor_per_layer_under_full():
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)), jnp.float32)
    out = {}
    for policy in ("none", "full"):
        vgg = VGG19Features(remat=policy)
        variables = vgg.init(jax.random.PRNGKey(0), x)
        loss = lambda v, y: sum(jnp.mean(t) for t in vgg.apply(v, y))  # noqa: E731
        out[policy] = (loss(variables, x), jax.jit(jax.grad(loss, 1))(variables, x), kept_bytes(loss, variables, x))
    np.testing.assert_allclose(out["full"][0], out["none"][0], rtol=1e-6)
    np.testing.assert_allclose(out["full"][1], out["none"][1], rtol=1e-5, atol=1e-7)
    assert out["full"][2] < 0.6 * out["none"][2]


def test_policy_names_and_the_old_booleans():
    assert remat_policy(True) == remat_policy("true") == "blocks"
    assert remat_policy(False) == remat_policy("false") == remat_policy(None) == "none"
    assert remat_policy("dots_with_no_batch_dims_saveable") == "dots_with_no_batch_dims_saveable"
    with pytest.raises(ValueError, match="save_only_these_names"):  # a factory, not a policy
        remat_policy("save_only_these_names")
    with pytest.raises(ConfigError, match=r"train.remat='most'.*none, blocks, full"):
        Networks(load_test_config("train.remat=most"))
