"""Network shapes, parameter counts equal to the reference's, pooling and losses."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax import models
from pix2pixhd_jax.models import (FeatureEncoder, GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator,
                                  NLayerDiscriminator, instance_average_pool)
from pix2pixhd_jax.models.layers import avg_pool_exclude_pad, count_params, instance_norm
from pix2pixhd_jax.training import losses

KEY = jax.random.PRNGKey(0)


def init_shapes(module, *shapes):
    args = [jnp.zeros(s) for s in shapes]
    return jax.eval_shape(lambda: module.init_with_output(KEY, *args))


@pytest.mark.parametrize("module, input_nc, expected", [
    (GlobalGenerator(3, 64, 4, 9), 36, 182_546_755),
    (LocalEnhancer(3, 32, 4, 9, 1, 3), 36, 182_857_059),
    (NLayerDiscriminator(64, 3), 39, 2_801_601),
    (FeatureEncoder(3, 16, 4), 3, 788_803),
])
def test_parameter_counts_equal_the_reference(module, input_nc, expected):
    _, variables = init_shapes(module, (1, 64, 64, input_nc))
    assert count_params(variables["params"]) == expected


def test_discriminator_rows_for_a_512x1024_input():
    out, _ = init_shapes(MultiscaleDiscriminator(64, 3, 3), (1, 512, 1024, 39))
    assert [o.shape[1] for o in out[0]] == [257, 129, 65, 66, 67]
    assert [o.shape[2] for o in out[0]] == [513, 257, 129, 130, 131]
    assert [o.shape[1] for o in out[1]] == [129, 65, 33, 34, 35]
    assert [o.shape[1] for o in out[2]] == [65, 33, 17, 18, 19]
    assert [o.shape[-1] for o in out[0]] == [64, 128, 256, 512, 1]


@pytest.mark.parametrize("h, w", [(64, 128), (128, 64), (96, 160)])
def test_generator_shapes(h, w):
    out, _ = init_shapes(GlobalGenerator(3, 8, 3, 2), (2, h, w, 36))
    assert out.shape == (2, h, w, 3)
    out, variables = init_shapes(LocalEnhancer(3, 8, 2, 2, 2, 1), (1, h, w, 36))
    assert out.shape == (1, h, w, 3)
    assert set(variables["params"]) == {"global_generator", "enhancer_1", "enhancer_2"}


def test_encoder_shape_and_pooled_output_is_constant_per_instance():
    image = jax.random.normal(KEY, (2, 32, 64, 3))
    inst = jnp.asarray(np.random.default_rng(0).integers(0, 4, (2, 32, 64)))
    enc = FeatureEncoder(3, 4, 2)
    variables = jax.jit(enc.init)(KEY, image)
    feats = jax.jit(enc.apply)(variables, image, inst)
    assert feats.shape == (2, 32, 64, 3)
    for b, i in itertools.product(range(2), range(4)):
        values = np.asarray(feats[b])[np.asarray(inst[b]) == i]
        np.testing.assert_allclose(values, np.broadcast_to(values[0], values.shape), atol=1e-6)


def brute_force_pool(features, inst):
    out = np.zeros_like(features)
    for b in range(features.shape[0]):
        for i in np.unique(inst[b]):
            mask = inst[b] == i
            out[b][mask] = features[b][mask].mean(axis=0)
    return out


@pytest.mark.parametrize("ids", [
    np.array([0, 1, 2]),
    np.array([7, 26000, 26001, 26002, 24000, 65535]),  # Cityscapes-style, sparse and large
    np.array([-5, 3, 100000]),  # negative and beyond 16 bits
])
def test_segment_sum_pooling_equals_a_brute_force_mean(ids):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 9, 13, 4)).astype(np.float32)
    inst = rng.choice(ids, size=(3, 9, 13))
    inst[1] = ids[0]  # one batch item with a single instance
    pooled = jax.jit(instance_average_pool)(jnp.asarray(features), jnp.asarray(inst))
    np.testing.assert_allclose(np.asarray(pooled), brute_force_pool(features, inst), rtol=1e-5, atol=1e-6)


def test_pooling_is_per_batch_item():
    features = np.stack([np.zeros((4, 4, 1)), np.ones((4, 4, 1))]).astype(np.float32)
    inst = np.zeros((2, 4, 4), np.int32)  # the same id in both items must not mix them
    pooled = instance_average_pool(jnp.asarray(features), jnp.asarray(inst))
    np.testing.assert_array_equal(np.asarray(pooled), features)


def test_pooling_gradient_flows_to_every_pixel():
    inst = jnp.asarray(np.array([[[0, 0, 1, 1]]]))
    grad = jax.grad(lambda f: instance_average_pool(f, inst)[0, 0, 0, 0])(jnp.ones((1, 1, 4, 1)))
    np.testing.assert_allclose(np.asarray(grad)[0, 0, :, 0], [0.5, 0.5, 0, 0])


def test_avg_pool_excludes_padding_like_count_include_pad_false():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    out = np.asarray(avg_pool_exclude_pad(x))[0, ..., 0]
    # Top-left window covers rows/cols 0..1 only (the padding is not counted): mean of 0,1,4,5.
    assert out.shape == (2, 2)
    assert out[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert out[1, 1] == pytest.approx(np.mean([5, 6, 7, 9, 10, 11, 13, 14, 15]))


def test_instance_norm_normalises_each_sample_and_channel():
    x = jax.random.normal(KEY, (2, 8, 8, 3)) * 5 + 2
    y = np.asarray(instance_norm(x))
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 2)), 1, atol=1e-3)


def test_transposed_conv_geometry_is_not_same_padding():
    # A single non-zero input pixel lands where PyTorch puts it: output rows 2i-1..2i+1.
    from pix2pixhd_jax.models.layers import ConvTranspose
    m = ConvTranspose(1, 3, 2, 1, 1)
    x = jnp.zeros((1, 4, 4, 1)).at[0, 1, 1, 0].set(1.0)
    variables = m.init(KEY, x)
    variables = jax.tree_util.tree_map(lambda a: jnp.ones_like(a) if a.ndim == 4 else jnp.zeros_like(a), variables)
    out = np.asarray(m.apply(variables, x))[0, ..., 0]
    assert out.shape == (8, 8)
    assert set(zip(*np.nonzero(out))) == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)}


GEOMETRIES = [  # kernel, stride, padding, output_padding, input H, W
    (3, 2, 1, 1, 5, 7),  # pix2pixHD's upsampling
    (4, 2, 1, 0, 6, 5),  # pix2pix's U-Net
    (5, 3, 2, 1, 4, 6),
    (1, 2, 0, 1, 3, 3),  # phases no tap reaches: bias only
    (3, 3, 0, 2, 3, 5),
]


@pytest.mark.parametrize("cpu_path", [False, True])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_transpose_matches_pytorch(geometry, cpu_path):
    torch = pytest.importorskip("torch")
    from pix2pixhd_jax.models.conv import conv_transpose
    k, s, p, op, h, w = geometry
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    weight = rng.standard_normal((3, 4, k, k)).astype(np.float32)  # PyTorch's (in, out, kh, kw)
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(weight),
        stride=s, padding=p, output_padding=op).numpy().transpose(0, 2, 3, 1)
    got = conv_transpose(jnp.asarray(x), jnp.asarray(weight.transpose(2, 3, 1, 0)), s, p, op, cpu_path=cpu_path)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_transpose_phases_have_the_dilated_forms_gradients(geometry):
    from pix2pixhd_jax.models.conv import conv_transpose
    k, s, p, op, h, w = geometry
    x = jax.random.normal(KEY, (2, h, w, 3))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, 4, 3))
    target = jax.random.normal(jax.random.PRNGKey(2), conv_transpose(x, kernel, s, p, op).shape)

    def loss(x, kernel, cpu_path):
        return jnp.sum((conv_transpose(x, kernel, s, p, op, cpu_path=cpu_path) - target) ** 2)

    dense = jax.grad(loss, argnums=(0, 1))(x, kernel, False)
    phased = jax.grad(loss, argnums=(0, 1))(x, kernel, True)
    for a, b in zip(dense, phased):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4)


CONV_GEOMETRIES = [  # batch, H, W, cin, cout, kernel, stride, padding
    (1, 9, 7, 3, 4, 3, 1, 0),  # after a reflection pad: computed padded by one and cropped
    (2, 6, 5, 3, 4, 1, 1, 0),  # 1x1: as is
    (2, 9, 8, 3, 5, 4, 2, 2),  # the discriminator's stride-2 layers
    (1, 7, 6, 3, 5, 4, 1, 2),  # its stride-1 layers
    (1, 4, 3, 3, 16, 3, 1, 0),  # cout >= output pixels: input gradient per tap
    (2, 3, 3, 2, 32, 3, 1, 1),  # the same with zero padding
    (1, 8, 8, 3, 4, 3, 2, 1),  # the generator's downsampling
    (1, 10, 9, 8, 2, 3, 1, 0),  # few output channels: g shifted instead of the input (G's conv_out)
    (1, 9, 9, 8, 1, 4, 2, 2),  # the same at stride 2 (D's last layer's shape, strided)
]


@pytest.mark.parametrize("one_matmul_per_kernel_row", [False, True])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES)
def test_cpu_conv_path_has_laxs_values_and_gradients(geometry, one_matmul_per_kernel_row, monkeypatch):
    from pix2pixhd_jax.models import conv
    from pix2pixhd_jax.models.conv import conv2d
    if one_matmul_per_kernel_row:  # what patch matrices above _PATCH_BYTES get
        monkeypatch.setattr(conv, "_PATCH_BYTES", 0)
    n, h, w, cin, cout, k, s, p = geometry
    x = jax.random.normal(KEY, (n, h, w, cin))
    kernel = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout))
    pads = ((p, p), (p, p))
    want = jax.lax.conv_general_dilated(x, kernel, (s, s), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    for cpu_path in (False, True):
        np.testing.assert_allclose(np.asarray(conv2d(x, kernel, (s, s), pads, cpu_path=cpu_path)),
                                   np.asarray(want), rtol=1e-5, atol=1e-5)
    target = jax.random.normal(jax.random.PRNGKey(2), want.shape)

    def loss(x, kernel, cpu_path):
        return jnp.sum((conv2d(x, kernel, (s, s), pads, cpu_path=cpu_path) - target) ** 2)

    lax_grads = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(x, kernel, False)
    cpu_grads = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(x, kernel, True)
    for a, b in zip(lax_grads, cpu_grads):
        assert b.shape == a.shape
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-3)


def test_cpu_conv_path_in_bfloat16_returns_bfloat16_gradients():
    from pix2pixhd_jax.models.conv import conv2d
    x = jax.random.normal(KEY, (1, 6, 6, 8), jnp.bfloat16)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 8, 8), jnp.bfloat16)
    grads = jax.grad(lambda x, k, c: jnp.sum(conv2d(x, k, cpu_path=c).astype(jnp.float32) ** 2),
                     argnums=(0, 1))
    lax_grads, cpu_grads = grads(x, kernel, False), grads(x, kernel, True)
    for a, b in zip(lax_grads, cpu_grads):
        assert b.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(b, np.float32), np.asarray(a, np.float32), rtol=0.05, atol=0.5)


def test_conv_layer_routes_through_conv2d_and_keeps_nn_convs_parameters(monkeypatch):
    from pix2pixhd_jax.models import layers
    calls = []
    monkeypatch.setattr(layers, "conv2d", lambda *a, **k: calls.append(a[2:]) or models.conv.conv2d(*a, **k))
    x = jax.random.normal(KEY, (1, 6, 6, 3))
    layer = layers.Conv(4, 3, stride=2, padding=1)
    variables = layer.init(KEY, x)
    assert calls == [((2, 2), [(1, 1), (1, 1)])]
    plain = nn.Conv(4, (3, 3), strides=(2, 2), padding=[(1, 1)] * 2)
    assert jax.tree_util.tree_map(jnp.shape, variables["params"]["conv"]) == \
        jax.tree_util.tree_map(jnp.shape, plain.init(KEY, x)["params"])
    np.testing.assert_allclose(np.asarray(layer.apply(variables, x)),
                               np.asarray(plain.apply({"params": variables["params"]["conv"]}, x)), atol=1e-5)


def test_transposed_conv_keeps_nn_conv_transposes_parameters():
    # Checkpoints and the reference-weight converter address up_i/conv/{kernel, bias}
    # with nn.ConvTranspose(transpose_kernel=True)'s shapes.
    from pix2pixhd_jax.models.layers import ConvTranspose
    x = jnp.zeros((1, 4, 4, 5))
    params = ConvTranspose(7, 3, 2, 1, 1).init(KEY, x)["params"]
    flax_params = nn.ConvTranspose(7, (3, 3), transpose_kernel=True).init(KEY, x)["params"]
    assert jax.tree_util.tree_map(jnp.shape, params) == {"conv": jax.tree_util.tree_map(jnp.shape, flax_params)}
    assert jax.tree_util.tree_map(jnp.dtype, params["conv"]) == {"kernel": jnp.float32, "bias": jnp.float32}


# ----- losses ----------------------------------------------------------------------


def preds(*scales):
    return [[jnp.asarray(x, jnp.float32) for x in scale] for scale in scales]


def test_lsgan_loss_sums_the_last_layer_of_each_scale():
    p = preds([np.ones((1, 2, 2, 1)) * 9, np.array([[[[0.5]], [[1.0]]]])], [np.zeros(3), np.array([2.0, 0.0])])
    # real: scale 0 last = [0.5, 1.0] -> mean((x-1)^2) = 0.125; scale 1 last = [2, 0] -> 1.0
    assert float(losses.gan_loss(p, True)) == pytest.approx(0.125 + 1.0)
    # fake: mean(x^2): 0.625 + 2.0
    assert float(losses.gan_loss(p, False)) == pytest.approx(0.625 + 2.0)


def test_vanilla_gan_loss_is_bce_on_logits():
    p = preds([np.array([0.0, 2.0])])
    expected_real = np.mean([np.log(2.0), np.log1p(np.exp(-2.0))])
    expected_fake = np.mean([np.log(2.0), 2.0 + np.log1p(np.exp(-2.0))])
    assert float(losses.gan_loss(p, True, use_lsgan=False)) == pytest.approx(expected_real, rel=1e-6)
    assert float(losses.gan_loss(p, False, use_lsgan=False)) == pytest.approx(expected_fake, rel=1e-6)


def test_feature_matching_weights_and_skips_the_last_layer():
    fake = preds([np.array([1.0, 1.0]), np.array([0.0]), np.array([100.0])],
                 [np.array([2.0]), np.array([3.0]), np.array([-100.0])])
    real = preds([np.array([0.0, 2.0]), np.array([2.0]), np.array([0.0])],
                 [np.array([2.0]), np.array([1.0]), np.array([0.0])])
    # n_layers_D = 3 -> 4/(3+1) = 1; num_D = 2 -> 1/2; lambda 10 -> weight 5 per L1 mean.
    expected = 5 * (1.0 + 2.0) + 5 * (0.0 + 2.0)
    assert float(losses.feature_matching_loss(fake, real, 3, 10.0)) == pytest.approx(expected)


def test_feature_matching_does_not_differentiate_the_real_features():
    real = preds([np.array([1.0]), np.array([0.0])])
    fake = preds([np.array([3.0]), np.array([0.0])])
    g_real = jax.grad(lambda r: losses.feature_matching_loss(fake, [[r, real[0][1]]], 3, 10.0))(real[0][0])
    g_fake = jax.grad(lambda f: losses.feature_matching_loss([[f, fake[0][1]]], real, 3, 10.0))(fake[0][0])
    assert float(g_real[0]) == 0.0 and float(g_fake[0]) == pytest.approx(10.0 * 0.5 * 2)


def test_discriminator_loss_and_l1():
    fake, real = preds([np.array([0.5])]), preds([np.array([0.5])])
    assert float(losses.discriminator_loss(fake, real)) == pytest.approx(0.5 * (0.25 + 0.25))
    loss, terms = losses.discriminator_loss(fake, real, with_terms=True)
    assert float(loss) == pytest.approx(0.5 * (0.25 + 0.25))
    assert float(terms["loss_D_fake"]) == pytest.approx(0.25) and float(terms["loss_D_real"]) == pytest.approx(0.25)
    assert float(losses.l1_loss(jnp.array([1.0, -1.0]), jnp.array([0.0, 0.0]))) == pytest.approx(1.0)


# ----- building from configs ----------------------------------------------------------------


@pytest.mark.parametrize("overrides, g_in, d_in", [
    ([], 36, 39),
    (["data.use_instance=False"], 35, 38),
    (["model.instance_feat=True"], 39, 39),
    (["data.label_nc=0", "data.use_instance=False"], 3, 6),
])
def test_input_channels_from_config(overrides, g_in, d_in):
    cfg = load_test_config(*overrides)
    assert models.generator_input_nc(cfg) == g_in and models.discriminator_input_nc(cfg) == d_in


def test_builders_follow_the_config():
    cfg = load_test_config("model.netG=local", "model.num_D=3")
    assert isinstance(models.build_generator(cfg), LocalEnhancer)
    assert models.build_discriminator(cfg).num_D == 3
    with pytest.raises(ValueError, match="model.netG='resnet'"):
        models.build_generator(load_test_config("model.netG=resnet"))


def test_cpu_conv_path_is_chosen_where_the_program_is_lowered_and_can_be_switched_off(monkeypatch):
    from jax import export

    from pix2pixhd_jax.models import conv
    monkeypatch.delenv("PIX2PIXHD_CPU_CONV", raising=False)
    assert conv.cpu_path_enabled()
    # The CPU path's kernel gradient is a dot_general over patches; lax's is a convolution.
    x, kernel = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 4))

    def lowered(platform):  # traced afresh: the switch is read where the program is traced
        grad = jax.jit(jax.grad(lambda k: jnp.sum(conv.conv2d(x, k))))
        return export.export(grad, platforms=[platform])(kernel).mlir_module()

    assert "dot_general" in lowered("cpu")
    assert "dot_general" not in lowered("cuda") and "dot_general" not in lowered("tpu")
    monkeypatch.setenv("PIX2PIXHD_CPU_CONV", "0")
    assert not conv.cpu_path_enabled()
    assert "dot_general" not in lowered("cpu")
    monkeypatch.delenv("PIX2PIXHD_CPU_CONV")
    with conv.lax_ops():
        assert not conv.cpu_path_enabled()
        assert "dot_general" not in lowered("cpu")
    assert conv.cpu_path_enabled()