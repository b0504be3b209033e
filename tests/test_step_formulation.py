"""The train step's shared discriminator passes give the same training as D run four times.

make_train_step runs D(real) once (D's real loss and G's feature-matching target) and, without
an image pool, D(fake) once (G's and D's gradients from one forward pass). `four_pass_step`
(tests/step_oracle.py) runs D four times, as the reference's code does (fake and real in G's
loss, fake and real in D's); both run 2 steps from the same state on the same batches, and the
states (but for the biases a normalisation cancels: step_helpers.normalised_away), metrics and
generated images must agree to float tolerance: with instance norm, with
batch norm and pix2pix's losses, with batch norm and feature matching, with the image pool,
and with the encoder.
"""

import jax
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.training.step import make_train_step
from step_helpers import LABEL_NC, TINY, fast_state, flat, leaf_name, make_batch, normalised_away
from step_oracle import four_pass_step


CASES = {
    # pix2pixHD's losses (GAN + feature matching, LSGAN), instance norm, two D scales.
    "instance": (TINY + ("model.num_D=2", "model.n_layers_D=2"), 32),
    # pix2pix: U-Net with dropout, PatchGAN, batch norm (running statistics in G and D), BCE + L1.
    "pix2pix_batch_norm": (("model.netG=unet_128", "model.netD=patch", "model.norm=batch", "model.use_dropout=True",
                            "model.ngf=4", "model.ndf=4", "model.n_layers_D=1", "model.num_D=1",
                            "loss.no_lsgan=True", "loss.no_ganFeat_loss=True", "loss.no_vgg_loss=True",
                            "loss.lambda_l1=100", "data.use_instance=False", f"data.label_nc={LABEL_NC}",
                            "train.batch_size=2"), 128),
    # Batch norm with feature matching: the real features G matches come from D's real pass.
    "batch_norm_feature_matching": (TINY + ("model.norm=batch", "model.num_D=2"), 32),
    # The image pool (3 images, batch 2: the second step finds it full): D's fake is not G's.
    "image_pool": (TINY + ("train.pool_size=3",), 32),
    # The encoder (its params ride with G's), with an L1 term: G's gradient has a direct part too.
    "encoder": (TINY + ("model.instance_feat=True", "model.nef=4", "model.n_downsample_E=1", "loss.lambda_l1=10"),
                32),
}


def _run(step, state, batches):
    out = []
    for batch in batches:
        state, metrics, fake = step(state, batch, {})
        out.append((jax.device_get(metrics), np.asarray(fake)))
    return jax.device_get(state), out


@pytest.mark.parametrize("case", list(CASES))
def test_shared_discriminator_passes_train_like_four_passes(case):
    overrides, size = CASES[case]
    config = load_test_config(*overrides)
    nets = Networks(config)
    state = fast_state(nets, size, size)
    if config.train.pool_size > 0:
        assert state.pool is not None
    batches = [make_batch(2, size, size, LABEL_NC, seed=10 + i, use_instance=config.data.use_instance)
               for i in range(2)]
    want_state, want = _run(jax.jit(four_pass_step(config, 10)), state, batches)
    got_state, got = _run(jax.jit(make_train_step(config, 10)), state, batches)

    for i, ((m_got, f_got), (m_want, f_want)) in enumerate(zip(got, want, strict=True)):
        assert set(m_got) == set(m_want)
        for key in m_want:
            assert float(m_got[key]) == pytest.approx(float(m_want[key]), rel=1e-5, abs=1e-6), (case, i, key)
        np.testing.assert_allclose(f_got, f_want, rtol=1e-5, atol=1e-6, err_msg=f"{case}: fake of step {i}")

    flat_got, flat_want = flat(got_state), flat(want_state)
    assert flat_got.keys() == flat_want.keys()
    away = {f".{part}{path}" for part, path in normalised_away(nets, state, batches[0])}
    bad = {k: float(np.abs(flat_got[k] - flat_want[k]).max()) for k in flat_want
           if k not in away and not np.allclose(flat_got[k], flat_want[k], rtol=1e-5, atol=1e-6)}
    assert not bad, (case, bad)
    assert int(got_state.step) == 2 and np.array_equal(got_state.rng, want_state.rng)
    if config.model.norm == "batch":  # D's running statistics moved, the same way in both
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(got_state.d_stats),
                                                          jax.tree_util.tree_leaves(state.d_stats), strict=True)]
        assert moved and all(moved)
    if config.train.pool_size > 0:
        assert int(got_state.pool["count"]) == 3


@pytest.mark.parametrize("case", ["instance", "pix2pix_batch_norm", "encoder"])
def test_cpu_conv_path_trains_like_laxs_convs(case, monkeypatch):
    # models/conv.py's CPU path (tap-matmul gradients, phase transposed convs, padded-and-cropped
    # convs) against lax's convs and gradients, through the whole step: losses and gradient
    # norms of the first step, then the second step's after one Adam update.
    overrides, size = CASES[case]
    config = load_test_config(*overrides)
    nets = Networks(config)
    state = fast_state(nets, size, size)
    batches = [make_batch(2, size, size, LABEL_NC, seed=20 + i, use_instance=config.data.use_instance)
               for i in range(2)]
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("PIX2PIXHD_CPU_CONV", flag)
        runs[flag] = _run(jax.jit(make_train_step(config, 10)), state, batches)
    (_, lax_steps), (_, cpu_steps) = runs["0"], runs["1"]
    for i, tol in ((0, 1e-4), (1, 2e-3)):
        m_lax, m_cpu = lax_steps[i][0], cpu_steps[i][0]
        for key in m_lax:
            assert float(m_cpu[key]) == pytest.approx(float(m_lax[key]), rel=tol, abs=1e-5), (case, i, key)
    assert float(lax_steps[0][0]["grad_norm_G"]) > 0 and float(lax_steps[0][0]["grad_norm_D"]) > 0
    np.testing.assert_allclose(cpu_steps[0][1], lax_steps[0][1], atol=1e-5)


def test_the_biases_left_out_are_those_a_norm_follows():
    """normalised_away (what the comparison above leaves out): with instance norm, every conv bias
    of G but its last, and of each D scale the inner layers' (the first and last convs have no
    norm after them)."""
    overrides, size = CASES["instance"]
    config = load_test_config(*overrides)
    nets = Networks(config)
    state = fast_state(nets, size, size)
    away = normalised_away(nets, state, make_batch(2, size, size, LABEL_NC, seed=10))
    biases = {(part, jax.tree_util.keystr(path)) for part in ("g_params", "d_params")
              for path, _ in jax.tree_util.tree_leaves_with_path(getattr(state, part)) if leaf_name(path) == "bias"}
    last_d = f"layer_{config.model.n_layers_D + 1}"
    kept = {(part, path) for part, path in biases
            if "conv_out" in path or "['layer_0']" in path or f"['{last_d}']" in path}
    assert {part for part, _ in kept} == {"g_params", "d_params"} and len(kept) == 1 + 2 * config.model.num_D
    assert {(part, path) for part, path in away if part.endswith("_params")} == biases - kept
    assert all(part.endswith("_params") for part, _ in away)  # instance norm keeps no statistics
