"""The accelerator programs, proven from this CPU: the train step, synthesis and the encoder
lowered with jax.export for cuda and tpu carry lax's convolutions only (the CPU path is chosen
where a program is lowered for the CPU), in the requested compute dtype, and no host callback.

"The network's convolutions" is read two ways: for synthesis and the encoder, the conv layers
of the parameter tree (one convolution each); for the train step (forward and gradients), the
same step lowered for the CPU with the CPU path switched off (lax's ops only).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from conftest import ROOT, TINY_OASIS, load_test_config, with_test_xla_flags
from lowering import conv_layers, conv_operand_dtypes, convolutions, host_callbacks, lowered_text
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.inference.synthesis import photo_program
from pix2pixhd_jax.models import conv
from pix2pixhd_jax.models.pix2pixhd import Networks, apply_inference, cast_for_inference
from pix2pixhd_jax.models.vgg19 import VGG19Features
from pix2pixhd_jax.training import aot
from pix2pixhd_jax.training.step import init_train_state, make_train_step
from pix2pixhd_jax.training.train import TrainProgram
from step_helpers import LABEL_NC, TINY, make_batch

# One xdist worker builds every case's lowerings once for all the tests here.
pytestmark = pytest.mark.xdist_group("lowering")

H = W = 32
ACCELERATORS = ("cuda", "tpu")
ENCODER = ("model.instance_feat=True", "model.nef=4", "model.n_downsample_E=1")
LOCAL = ("model.netG=local", "model.n_local_enhancers=1", "model.n_blocks_local=1")
# (overrides, VGG loss on)
STEP_CASES = {
    "global_f32_vgg_encoder_pool": (TINY + ENCODER + ("train.pool_size=2",), True),
    "global_bf16_vgg": (TINY + ("train.dtype=bfloat16",), True),
    "local_f32_pool": (TINY + LOCAL + ("train.pool_size=2",), False),
    "local_bf16_vgg_encoder": (TINY + LOCAL + ENCODER + ("train.dtype=bfloat16",), True),
}


def step_program(overrides, vgg):
    """(step function, its arguments as shapes) for a config, as the training loop jits it."""
    config = load_test_config(*overrides)
    nets = Networks(config)
    state = jax.eval_shape(lambda r: init_train_state(nets, r, H, W, image_size=(H, W)), jax.random.PRNGKey(0))
    vgg_apply, vgg_vars = None, {}
    if vgg:
        module = VGG19Features(dtype=nets.G.dtype)
        vgg_apply = module.apply
        vgg_vars = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, H, W, 3)))
    batch = make_batch(2, H, W, LABEL_NC, use_instance=config.data.use_instance)
    return make_train_step(config, 10, vgg_apply), (state, batch, vgg_vars), config


@pytest.fixture(autouse=True, scope="module")
def cpu_path_on():
    """The CPU path on, as outside the tests: its CPU programs must differ from the accelerators'."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIX2PIXHD_CPU_CONV", "1")
        yield


@pytest.fixture(scope="module")
def step_lowerings():
    """Every step case lowered for cuda, tpu, the CPU (CPU path on) and the CPU with lax's ops only."""
    out = {}
    for case, (overrides, vgg) in STEP_CASES.items():
        fn, args, config = step_program(overrides, vgg)
        texts = {p: lowered_text(fn, args, p) for p in ACCELERATORS + ("cpu",)}
        with conv.lax_ops():  # a step traced afresh (jit caches traces per function)
            fn, args, _ = step_program(overrides, vgg)
            texts["cpu_lax"] = lowered_text(fn, args, "cpu")
        out[case] = (texts, config)
    return out


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_the_train_step_lowers_for_accelerators_with_the_networks_convolutions(case, step_lowerings):
    texts, config = step_lowerings[case]
    want = convolutions(texts["cpu_lax"])
    assert want > 0 and "dot_general" not in texts["cpu_lax"]
    # The CPU path does rewrite the CPU program (so the comparison below can fail).
    assert "dot_general" in texts["cpu"]
    dtype = {"float32": "f32", "bfloat16": "bf16"}[config.train.dtype]
    for platform in ACCELERATORS:
        text = texts[platform]
        assert convolutions(text) == want, (platform, convolutions(text), want)
        assert "dot_general" not in text, platform
        assert conv_operand_dtypes(text) == {dtype}, (platform, conv_operand_dtypes(text))
        assert host_callbacks(text) == [], platform


SHARDED = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{tests!r}, {root!r}]
    import jax
    from conftest import load_test_config
    from lowering import convolutions
    from step_helpers import SHARDED_CONFIG, make_batch
    from pix2pixhd_jax.models.pix2pixhd import Networks
    from pix2pixhd_jax.runtime import sharding
    from pix2pixhd_jax.training.step import init_train_state, make_train_step
    from jax import export

    assert len(jax.devices()) == 4
    config = load_test_config(*SHARDED_CONFIG, "train.shard_params=True")
    nets = Networks(config)
    state = jax.eval_shape(lambda r: init_train_state(nets, r, 32, 32), jax.random.PRNGKey(0))
    batch = make_batch(4, 32, 32, 8)
    out = {{}}
    for name, devices in (("sharded", jax.devices()), ("one_device", jax.devices()[:1])):
        mesh = sharding.make_mesh(devices)
        state_sh = sharding.state_shardings(state, mesh, True)
        batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
        step = jax.jit(make_train_step(config, 2), in_shardings=(state_sh, batch_sh, repl),
                       out_shardings=(state_sh, repl, batch_sh), donate_argnums=(0,))
        for platform in ("cuda", "tpu"):
            exported = export.export(step, platforms=[platform])(state, batch, {{}})
            text = exported.mlir_module()
            out[f"{{name}}_{{platform}}"] = {{"devices": exported.nr_devices, "convolutions": convolutions(text),
                                            "dot_general": "dot_general" in text}}
    print("RESULT " + json.dumps(out))
""")


def test_the_sharded_train_step_lowers_for_accelerators_over_4_devices():
    env = dict(os.environ, XLA_FLAGS=with_test_xla_flags("--xla_force_host_platform_device_count=4"))
    script = SHARDED.format(tests=str(ROOT / "tests"), root=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    for platform in ("cuda", "tpu"):
        sharded, single = out[f"sharded_{platform}"], out[f"one_device_{platform}"]
        assert sharded["devices"] == 4 and single["devices"] == 1
        assert sharded["convolutions"] == single["convolutions"] > 0
        assert not sharded["dot_general"] and not single["dot_general"]


def abstract_variables(nets, dtype=None):
    g_params, g_stats, _, _ = jax.eval_shape(lambda: nets.init(jax.random.PRNGKey(0), 64, 64))
    gen = {"params": g_params["generator"], "batch_stats": g_stats["generator"]}
    enc = {"params": g_params["encoder"], "batch_stats": g_stats["encoder"]} if "encoder" in g_params else None
    if dtype is not None:
        cast = lambda v: jax.eval_shape(lambda t: cast_for_inference(t, dtype), v)  # noqa: E731
        gen, enc = cast(gen), (cast(enc) if enc else None)
    return gen, enc


@pytest.mark.parametrize("config_file, dtype, layers", [
    ("default.py", None, 28),  # the reference's 512p global generator: 28 conv layers
    ("default.py", jnp.bfloat16, 28),
    ("cityscapes_2048x1024.py", None, None),  # the local enhancer
])
def test_synthesis_lowers_for_accelerators_with_one_convolution_per_layer(config_file, dtype, layers):
    config = load_config(str(ROOT / "configs" / config_file))
    nets = Networks(config, dtype)
    g_vars, _ = abstract_variables(nets, dtype)
    want = conv_layers(g_vars["params"])
    assert layers is None or want == layers
    h, w = 64, 128
    args = (g_vars, jax.ShapeDtypeStruct((1, h, w), jnp.int32), jax.ShapeDtypeStruct((1, h, w), jnp.int32), None)
    for platform in ACCELERATORS:
        text = lowered_text(photo_program(nets), args, platform)
        assert convolutions(text) == want, (platform, convolutions(text), want)
        assert conv_operand_dtypes(text) == {"bf16" if dtype is not None else "f32"}
        assert host_callbacks(text) == [] and "dot_general" not in text
    assert convolutions(lowered_text(photo_program(nets), args, "cpu")) > want  # the CPU path's phase convs


def test_the_encoder_lowers_for_accelerators_with_one_convolution_per_layer():
    config = load_test_config(*TINY, *ENCODER, "model.n_downsample_E=2")
    nets = Networks(config)
    _, e_vars = abstract_variables(nets)
    want = conv_layers(e_vars["params"])
    assert want == 2 + 2 * 2
    args = (e_vars, jax.ShapeDtypeStruct((2, H, W, 3), jnp.float32), jax.ShapeDtypeStruct((2, H, W), jnp.int32))
    for platform in ACCELERATORS:
        text = lowered_text(lambda v, x, i: apply_inference(nets.E, v, x, i), args, platform)
        assert convolutions(text) == want and host_callbacks(text) == [] and "dot_general" not in text


def oasis_config(*overrides):
    return load_test_config(*TINY_OASIS, f"data.label_nc={LABEL_NC}", *overrides)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_oasis_step_lowers_for_accelerators_with_the_networks_convolutions(dtype):
    """OASIS's step (two passes of G, four of D with LabelMix, the moving average): lax's
    convolutions only, as many as the step lowered for the CPU with lax's ops; spectral norm's
    power iterations are its only matrix products (as many on every platform)."""
    def lowered(platform):
        program = TrainProgram(oasis_config(f"train.dtype={dtype}"), (H, W), steps_per_epoch=10)
        state = jax.eval_shape(program.init, jax.random.PRNGKey(0))
        batch = make_batch(2, H, W, LABEL_NC, use_instance=False)
        return lowered_text(program.step, (state, batch, {}), platform)

    texts = {p: lowered(p) for p in ACCELERATORS + ("cpu",)}
    with conv.lax_ops():
        texts["cpu_lax"] = lowered("cpu")
    want = convolutions(texts["cpu_lax"])
    assert want > 0 and texts["cpu"].count("dot_general") > texts["cpu_lax"].count("dot_general")
    compute = {"float32": "f32", "bfloat16": "bf16"}[dtype]
    for platform in ACCELERATORS:
        text = texts[platform]
        assert convolutions(text) == want, (platform, convolutions(text), want)
        assert text.count("dot_general") == texts["cpu_lax"].count("dot_general"), platform
        assert conv_operand_dtypes(text) == {compute}, (platform, conv_operand_dtypes(text))
        assert host_callbacks(text) == [], platform


def test_oasis_synthesis_lowers_for_accelerators_with_one_convolution_per_layer_and_noise_as_input():
    config = oasis_config()
    nets = Networks(config)
    g_vars, _ = abstract_variables(nets)
    kernels = [p for p, _ in jax.tree_util.tree_leaves_with_path(g_vars["params"]) if "kernel" in str(p[-1])]
    label = jax.ShapeDtypeStruct((2, H, W), jnp.int32)
    for noise in (jax.ShapeDtypeStruct((2, 4), jnp.float32), jax.ShapeDtypeStruct((2, H, W, 4), jnp.float32)):
        for platform in ACCELERATORS:
            text = lowered_text(photo_program(nets), (g_vars, label, None, None, noise), platform)
            assert convolutions(text) == len(kernels), (platform, convolutions(text), len(kernels))
            assert host_callbacks(text) == [] and "threefry" not in text, platform  # nothing drawn inside
    # `benchmark --topology ... --what synthesis` lowers the same program, one noise vector a picture.
    text = aot.lower_program(config, jax.devices()[:1], H, W, 2, "synthesis").as_text()
    assert "tensor<2x4xf32>" in text and "threefry" not in text
