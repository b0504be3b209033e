"""OASIS's train step: two steps against two iterations of OASIS's train.py in PyTorch (the same
weights, noise and LabelMix masks): the losses, every parameter after Adam, the batch-norm
statistics and spectral norm's u and v both networks leave, and the moving average of G."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import load_test_config  # noqa: E402
from pix2pixhd_jax.errors import ConfigError  # noqa: E402
from pix2pixhd_jax.models.pix2pixhd import Networks  # noqa: E402
from pix2pixhd_jax.models.spade_generator import broadcast_noise  # noqa: E402
from pix2pixhd_jax.training import oasis_losses  # noqa: E402
from pix2pixhd_jax.training.oasis_step import (OASISTrainState, init_oasis_train_state,  # noqa: E402
                                               make_oasis_train_step, oasis_optimizers)
from pix2pixhd_jax.weights import oasis as oasis_weights  # noqa: E402

import torch_spade as ref  # noqa: E402

LABEL_NC, NGF, NDF, BLOCKS, Z = 5, 4, 4, 2, 4
# Small lrs: a bias right before a batch norm has no gradient but float error, which Adam's first
# steps turn into a move of up to lr either way (on both sides, differently); the batch norm's
# running mean sees a tenth of it. Everything else is compared at a tenth of the lr.
LR_G, LR_D = 1e-5, 4e-5
TINY_OASIS = ("model.netG=spade", "model.netD=oasis", "data.use_instance=False", f"data.label_nc={LABEL_NC}",
              f"model.ngf={NGF}", f"model.ndf={NDF}", f"model.num_res_blocks={BLOCKS}", f"model.z_dim={Z}",
              "model.spade_hidden=8", "train.beta1=0.0", f"train.lr={LR_G}", f"train.lr_D={LR_D}", "train.ema_decay=0.9",
              "loss.lambda_labelmix=10.0", "loss.no_vgg_loss=True", "loss.lambda_l1=0.0")


def tiny_config(*overrides):
    return load_test_config(*TINY_OASIS, *overrides)


def torch_nets(seed=0):
    g = ref.randomize(ref.OASISGenerator(LABEL_NC, NGF, BLOCKS, Z, hidden=8), seed=seed)
    d = ref.randomize(ref.OASISDiscriminator(LABEL_NC, NDF, BLOCKS), seed=seed + 1)
    return g.train(), d.train()


def imported_state(config, g, d):
    """The torch networks' weights in a fresh state (built without running init, which is slow
    outside jit)."""
    nets = Networks(config)
    g_vars = oasis_weights.oasis_generator_variables(ref_state(g), nets.G, LABEL_NC)
    d_vars = oasis_weights.oasis_discriminator_variables(ref_state(d), nets.D)
    g_params, g_stats = {"generator": g_vars["params"]}, {"generator": g_vars["batch_stats"]}
    g_tx, d_tx = oasis_optimizers(config.train, 1)
    rng = jax.random.split(jax.random.PRNGKey(2))[1]  # init's: its LabelMix masks mix in both steps
    return OASISTrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_stats=g_stats,
                           g_opt=g_tx.init(g_params), d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
                           d_opt=d_tx.init(d_vars["params"]), rng=rng, ema_params=g_params, ema_stats=g_stats)


def ref_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def assert_trees_close(ours, theirs, what, atol, free=None, free_atol=0.0):
    """Leaf by leaf; where `free` (a tree of booleans) is set, free_atol more is allowed."""
    flat_ours = dict(jax.tree_util.tree_leaves_with_path(ours))
    flat_theirs = dict(jax.tree_util.tree_leaves_with_path(theirs))
    flat_free = dict(jax.tree_util.tree_leaves_with_path(free)) if free is not None else {}
    assert flat_ours.keys() == flat_theirs.keys()
    for path, value in flat_theirs.items():
        err = np.abs(np.asarray(flat_ours[path]) - value)
        allowed = atol + 1e-4 * np.abs(value) + free_atol * flat_free.get(path, np.zeros(value.shape, bool))
        assert np.all(err <= allowed), f"{what} {jax.tree_util.keystr(path)}: max error {err.max():.3g}"


def gradient_free(module, plan_variables):
    """Where the torch module's last gradients are float error (a bias before a batch norm): a
    tree of booleans in our layout (`plan_variables(state dict) -> variables`)."""
    grads = {name: p.grad.abs() for name, p in module.named_parameters()}
    top = max(float(g.max()) for g in grads.values())
    sd = {k: np.zeros(tuple(v.shape), np.float32) for k, v in module.state_dict().items()}
    sd.update({k: (g < 1e-5 * top).numpy().astype(np.float32) for k, g in grads.items()})
    return jax.tree_util.tree_map(lambda x: x > 0, plan_variables(sd)["params"])


@pytest.mark.slow  # compiling the step: about a minute on two cores
def test_two_steps_are_two_iterations_of_oasis_train_py():
    config = tiny_config()
    g, d = torch_nets()
    state = imported_state(config, g, d)
    ema = {k: v.clone() for k, v in g.state_dict().items()}
    opt_g = torch.optim.Adam(g.parameters(), lr=LR_G, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=LR_D, betas=(0.0, 0.999))
    nets = Networks(config)
    g_free = d_free = None
    step = jax.jit(make_oasis_train_step(config, steps_per_epoch=10))
    rng = np.random.default_rng(0)
    for it in range(2):
        ids = np.kron(rng.integers(0, LABEL_NC, size=(2, 2, 4)), np.ones((1, 8, 8), np.int64)).astype(np.uint8)
        photo = rng.integers(0, 256, size=(2, 16, 32, 3)).astype(np.uint8)
        # The step's draws: its rng splits into (next, G's noise, D's noise, LabelMix's coins).
        _, k_g, k_d, k_mix = jax.random.split(state.rng, 4)
        z_g = broadcast_noise(jax.random.fold_in(k_g, 1), 2, 16, 32, Z)
        z_d = broadcast_noise(jax.random.fold_in(k_d, 1), 2, 16, 32, Z)
        mask = oasis_losses.labelmix_mask(k_mix, jnp.asarray(ids), LABEL_NC)
        assert 0 < float(mask.mean()) < 1
        state, metrics, fake = step(state, {"label_ids": ids, "image": photo}, {})
        label = nchw(np.eye(LABEL_NC)[ids])
        theirs = ref.oasis_iteration(g, d, ema, opt_g, opt_d, label, nchw(photo / 127.5 - 1.0), nchw(z_g), nchw(z_d),
                                     nchw(mask), lambda_labelmix=10.0, ema_decay=0.9)
        for key in ("loss_G", "loss_D", "loss_D_fake", "loss_D_real", "loss_D_labelmix"):
            np.testing.assert_allclose(float(metrics[key]), theirs[key], rtol=2e-5, err_msg=f"step {it} {key}")
        assert fake.shape == (2, 16, 32, 3)
        g_vars = lambda sd: oasis_weights.oasis_generator_variables(sd, nets.G, LABEL_NC)  # noqa: E731
        d_vars = lambda sd: oasis_weights.oasis_discriminator_variables(sd, nets.D)  # noqa: E731
        free = gradient_free(g, g_vars)
        g_free = free if g_free is None else jax.tree_util.tree_map(jnp.logical_or, g_free, free)
        free = gradient_free(d, d_vars)
        d_free = free if d_free is None else jax.tree_util.tree_map(jnp.logical_or, d_free, free)
        g_now, d_now = g_vars(ref_state(g)), d_vars(ref_state(d))
        ema_now = g_vars({k: v.numpy() for k, v in ema.items()})
        steps = it + 1
        assert_trees_close(state.g_params["generator"], g_now["params"], f"step {it} G", LR_G / 10, g_free,
                           2 * LR_G * steps)
        assert_trees_close(state.d_params, d_now["params"], f"step {it} D", LR_D / 10, d_free, 2 * LR_D * steps)
        assert_trees_close(state.g_stats["generator"], g_now["batch_stats"], f"step {it} G stats", 1e-5)
        assert_trees_close(state.d_stats, d_now["batch_stats"], f"step {it} D u, v", 1e-5)
        assert_trees_close(state.ema_params["generator"], ema_now["params"], f"step {it} EMA", LR_G / 10, g_free,
                           2 * LR_G * steps)
        assert_trees_close(state.ema_stats["generator"], ema_now["batch_stats"], f"step {it} EMA stats", 1e-5)
    assert int(state.step) == 2


def test_without_labelmix_or_ema_the_state_and_metrics_say_so():
    config = tiny_config("loss.lambda_labelmix=0.0", "train.ema_decay=0.0")
    state = jax.eval_shape(lambda: init_oasis_train_state(Networks(config), jax.random.PRNGKey(0), 16, 16))
    assert state.ema_params is None and state.ema_stats is None
    batch = {"label_ids": np.zeros((1, 16, 16), np.uint8) + 2, "image": np.zeros((1, 16, 16, 3), np.uint8)}
    shapes = jax.eval_shape(make_oasis_train_step(config, 10), state, batch, {})
    new_state, metrics, _ = shapes
    assert "loss_D_labelmix" not in metrics and new_state.ema_params is None
    assert isinstance(new_state, OASISTrainState)


@pytest.mark.parametrize("override, message", [
    ("model.netG=global", "model.netD=oasis trains a SPADE generator"),
    ("train.pool_size=10", "no image pool"),
    ("model.instance_feat=True", "feature encoder"),
    ("train.ema_decay=1.0", r"train.ema_decay=1.0 is not in \[0, 1\)"),
])
def test_configs_the_step_cannot_train_are_refused_with_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        make_oasis_train_step(tiny_config(override), 10)
