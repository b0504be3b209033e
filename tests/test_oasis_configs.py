"""The OASIS configs carry boschresearch/OASIS's settings, build the networks they describe, and
bad SPADE/OASIS settings are refused naming the key."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.errors import ConfigError
from pix2pixhd_jax.models.oasis_discriminator import OASISDiscriminator
from pix2pixhd_jax.models.pix2pixhd import (Networks, build_discriminator, build_generator, discriminator_input_nc,
                                           generate, noise_channels, size_divisor)
from pix2pixhd_jax.models.spade_generator import SPADEGenerator

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cityscapes_and_ade20k_have_oasis_settings():
    c = load_config(str(CONFIGS / "oasis_cityscapes.py"))
    m, t, loss = c.model, c.train, c.loss
    assert (m.netG, m.spade_arch, m.ngf, m.num_res_blocks, m.z_dim, m.netD, m.ndf) == ("spade", "oasis", 64, 6, 64,
                                                                                       "oasis", 64)
    assert (m.spectral_norm, m.param_free_norm, m.spade_kernel_size, m.spade_hidden) == (True, "batch", 3, 128)
    assert (c.data.label_nc, c.data.use_instance, c.data.load_size, c.data.resize_or_crop) == (35, False, 512,
                                                                                             "scale_width")
    # config.py's Cityscapes defaults: lr_g 4e-4, lambda_labelmix 5, EMA_decay 0.999; batch 20.
    assert (t.batch_size, t.lr, t.lr_D, t.beta1, t.beta2, t.niter, t.niter_decay, t.ema_decay) == (
        20, 4e-4, 4e-4, 0.0, 0.999, 200, 0, 0.999)
    assert (loss.lambda_labelmix, loss.no_balancing_inloss, loss.contain_dontcare_label, loss.no_vgg_loss) == (
        5.0, False, True, True)

    a = load_config(str(CONFIGS / "oasis_ade20k.py"))
    assert (a.data.label_nc, a.data.load_size, a.data.fine_size, a.data.resize_or_crop) == (151, 286, 256,
                                                                                          "resize_and_crop")
    assert (a.train.batch_size, a.train.lr, a.train.lr_D, a.train.ema_decay, a.loss.lambda_labelmix) == (
        32, 1e-4, 4e-4, 0.9999, 10.0)


@pytest.mark.parametrize("name, size", [("oasis_cityscapes", (256, 512)), ("oasis_ade20k", (256, 256)),
                                        ("oasis_synthetic", (128, 128))])
def test_each_config_builds_its_networks_at_its_training_size(name, size):
    config = load_config(str(CONFIGS / f"{name}.py"))
    nets = Networks(config)
    assert isinstance(nets.G, SPADEGenerator) and isinstance(nets.D, OASISDiscriminator)
    h, w = size
    assert h % size_divisor(config.model) == 0 and w % size_divisor(config.model) == 0
    g_params, g_stats, d_params, d_stats = jax.eval_shape(lambda: nets.init(jax.random.PRNGKey(0), h, w))
    assert "u" in g_stats["generator"]["block_0"]["conv_0"] and "mean" in g_stats["generator"]["block_0"]["norm_0"][
        "param_free_norm"]
    inputs = {"label": jnp.zeros((1, h, w, config.data.label_nc))}
    fake = jax.eval_shape(lambda p, s: generate(nets, p, s, inputs, train=False, rng=jax.random.PRNGKey(0)),
                          g_params, g_stats)[0]
    assert fake.shape == (1, h, w, 3)
    logits = jax.eval_shape(lambda p, s: nets.D.apply({"params": p, "batch_stats": s}, jnp.zeros((1, h, w, 3))),
                            d_params, d_stats)
    assert logits.shape == (1, h, w, config.data.label_nc + 1)
    assert discriminator_input_nc(config) == 3 and noise_channels(config) == config.model.z_dim


def test_size_divisor_counts_the_generators_upsamplings_and_the_discriminators_poolings():
    config = load_config(str(CONFIGS / "oasis_synthetic.py"))
    assert size_divisor(config.model) == 32  # D halves 5 times; G doubles 4 times
    config.model.netD = "multiscale"
    assert size_divisor(config.model) == 16
    config.model.spade_arch, config.model.num_upsampling_layers = "spade", "more"
    assert size_divisor(config.model) == 64


def filled(shapes, seed=0):
    """Variables of these shapes from numpy (no init program compiled): kernels N(0, 0.2), biases
    U(-0.1, 0.1), running statistics 0 and 1, spectral norm's u and v unit vectors."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("u", "v"):
            x = rng.normal(size=s.shape)
            return np.asarray(x / np.linalg.norm(x), s.dtype)
        value = {"kernel": lambda: rng.normal(0.0, 0.2, s.shape), "bias": lambda: rng.uniform(-0.1, 0.1, s.shape),
                 "var": lambda: np.ones(s.shape)}.get(name, lambda: np.zeros(s.shape))()
        return np.asarray(value, s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_generate_draws_noise_per_image_or_reads_the_one_given():
    config = load_config(str(CONFIGS / "oasis_synthetic.py"), ["model.ngf=2", "model.spade_hidden=4",
                                                               "model.num_res_blocks=2", "model.z_dim=3"])
    nets = Networks(config)
    g_params, g_stats, _, _ = filled(jax.eval_shape(lambda: nets.init(jax.random.PRNGKey(0), 8, 8)))
    label = jnp.zeros((2, 8, 8, config.data.label_nc)).at[..., 7].set(1.0)
    drawn = jax.jit(lambda rng: generate(nets, g_params, g_stats, {"label": label}, train=False, rng=rng)[0])
    given = jax.jit(lambda rng, z: generate(nets, g_params, g_stats, {"label": label, "noise": z}, train=False,
                                            rng=rng)[0])

    def run(rng, noise=None):
        return drawn(rng) if noise is None else given(rng, noise)

    a, b = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
    assert not jnp.allclose(a, b) and jnp.allclose(a, run(jax.random.PRNGKey(1)))
    assert not jnp.allclose(a[0], a[1])  # one z per image
    z = jnp.ones((2, 8, 8, 3))
    fixed = run(jax.random.PRNGKey(1), z)
    assert jnp.allclose(fixed, run(jax.random.PRNGKey(2), z))
    # Two images of one batch go through differently tiled kernels on XLA:CPU; with these large
    # random weights their round-off reaches ~2e-3 where tanh is not saturated (different noise
    # differs by ~1).
    assert jnp.allclose(fixed[0], fixed[1], atol=1e-2) and not jnp.allclose(a[0], a[1], atol=1e-2)


@pytest.mark.parametrize("override, message", [
    ("model.spade_arch=pix2pixhd", "model.spade_arch='pix2pixhd' is not one of"),
    ("model.param_free_norm=group", "model.param_free_norm='group' is not one of"),
    ("model.num_res_blocks=7", "model.num_res_blocks=7 is not between 2 and 6"),
    ("model.num_upsampling_layers=all", "model.num_upsampling_layers='all' is not one of"),
    ("model.spade_kernel_size=4", "model.spade_kernel_size=4 is not odd"),
])
def test_bad_spade_settings_name_the_key(override, message):
    config = load_config(str(CONFIGS / "oasis_synthetic.py"), [override])
    with pytest.raises(ConfigError, match=message):
        build_generator(config)


def test_oasis_discriminator_needs_label_ids():
    config = load_config(str(CONFIGS / "oasis_synthetic.py"), ["data.label_nc=0"])
    with pytest.raises(ConfigError, match="data.label_nc=0"):
        build_discriminator(config)


def test_the_comparisons_oasis_ablations_each_take_away_one_part():
    """configs/paper_comparison.py: OASIS at the comparison's budget and schedule, and each ablation
    differs from it in its one part only."""
    def flat(config):
        return {f"{g}.{k}": v for g in ("data", "model", "loss", "train") for k, v in config[g].items()}

    path = str(CONFIGS / "paper_comparison.py")
    oasis, pix2pixhd = (flat(load_config(f"{path}:{m}")) for m in ("oasis", "pix2pixhd"))
    assert (oasis["model.netG"], oasis["model.netD"], oasis["loss.no_vgg_loss"]) == ("spade", "oasis", True)
    # The comparison's runs were made at OASIS's decay, whatever the synthetic config's default is.
    assert oasis["train.ema_decay"] == 0.999
    for key in ("train.niter", "train.niter_decay", "train.batch_size", "train.eval_every", "train.eval_segmenter",
                "data.fine_size", "data.load_size"):
        assert oasis[key] == pix2pixhd[key], key
    expected = {"oasis_no_labelmix": {"loss.lambda_labelmix": 0.0}, "oasis_no_noise": {"model.z_dim": 0},
                "oasis_no_balancing": {"loss.no_balancing_inloss": True},
                "oasis_patch_d": {"model.netD": "multiscale", "model.ndf": 8, "loss.no_ganFeat_loss": False},
                "oasis_ema_995": {"train.ema_decay": 0.995}}
    for method, changes in expected.items():
        variant = flat(load_config(f"{path}:{method}"))
        diff = {k: v for k, v in variant.items() if oasis[k] != v}
        assert diff == changes, method
        Networks(load_config(f"{path}:{method}"))  # every variant builds
    ema, seed1 = (load_config(f"{path}:{m}") for m in ("oasis_ema_995", "oasis_ema_995_seed1"))
    assert flat(seed1) == flat(ema) and (ema.seed, seed1.seed) == (0, 1)
    patch_d = flat(load_config(f"{path}:oasis_patch_d"))
    for key in ("model.netD", "model.ndf", "model.num_D", "model.n_layers_D", "loss.no_lsgan", "loss.no_ganFeat_loss",
                "loss.lambda_feat"):
        assert patch_d[key] == pix2pixhd[key], key
