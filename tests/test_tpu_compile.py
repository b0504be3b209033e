"""The train step compiled by XLA:TPU for TPU slices, on this CPU machine (runtime/topology.py,
training/aot.py): a step of the demo's model family fits the memory its state and activations
need and splits its batch over a 4-chip and a 2-chip mesh; the data-parallel program's only
cross-chip traffic is the gradients' all-reduce; with train.shard_params each chip holds its share
of the state.

XLA:TPU's compile time and host memory grow with the image (the demo's own 128x128 step: about
five minutes on two cores and 11 GB), so these compile small networks on 32x32 images, share the
compiles within the module and run the module on one xdist worker (xdist_group).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import TINY_OASIS, load_test_config
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.models.pix2pixhd import Networks, model_inputs, size_divisor
from pix2pixhd_jax.runtime import sharding, topology
from pix2pixhd_jax.training import aot
from pix2pixhd_jax.training.benchmark import random_batch
from pix2pixhd_jax.training.step import init_train_state
from pix2pixhd_jax.training.train import TrainProgram

pytest.importorskip("libtpu", reason="libtpu (XLA:TPU's compiler) is not installed here: pip install '.[tpu]'")
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("xla_tpu")]

SIZE = 32
# The demo's model (two discriminator scales, LSGAN, feature matching) made narrow and shallow.
SMALL = ("model.ngf=8", "model.n_downsample_global=2", "model.n_blocks_global=2", "model.ndf=8", "model.n_layers_D=2",
         "train.batch_size=4")


def tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))


def up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def activation_bytes(shape, itemsize: int = 4) -> int:
    """An upper bound on an (N, H, W, C) activation's bytes in HBM: XLA:TPU lays a narrow one out
    with either W or C as the 128-wide minor dimension; the larger of the two."""
    *lead, w, c = shape
    return int(np.prod(lead)) * max(up(w, 8) * up(c, 128), up(c, 8) * up(w, 128)) * itemsize


def layer_output_bytes(config, per_chip_batch: int) -> int:
    """Every layer's output of G (with its input) and of D on the fake and the real photo, for one
    chip's batch, in float32 and TPU tiles: the activations a training step makes."""
    nets = Networks(config)
    batch = jax.eval_shape(lambda: random_batch(config, per_chip_batch, SIZE, SIZE))
    g_params, _, d_params, _ = jax.eval_shape(lambda r: nets.init(r, 32, 32), jax.random.PRNGKey(0))

    def forward(g, d, b):
        label = model_inputs(b, config)["label"]
        fake, g_mid = nets.G.apply({"params": g}, label, train=True, capture_intermediates=True)
        _, d_mid = nets.D.apply({"params": d}, jnp.concatenate([label, fake.astype(jnp.float32)], -1), train=True,
                                capture_intermediates=True)
        return label, g_mid, d_mid

    label, g_mid, d_mid = jax.eval_shape(forward, g_params["generator"], d_params, batch)
    f32 = lambda tree: sum(activation_bytes(x.shape) for x in jax.tree_util.tree_leaves(tree))  # noqa: E731
    return f32(label) + f32(g_mid) + 2 * f32(d_mid)


@pytest.fixture(scope="module")
def v5e():
    devices = topology.devices("v5e:2x2")
    return devices, topology.chip(devices[0])


@pytest.fixture(scope="module")
def demo(v5e):
    devices, chip = v5e
    config = load_test_config(*SMALL)
    assert config.train.batch_size == len(devices)  # one image per chip
    return config, aot.compile_program(config, devices, SIZE, SIZE, per_chip_batch=1)


def test_the_step_fits_its_state_and_activations_on_each_chip(v5e, demo):
    (_, chip), (config, compiled) = v5e, demo
    figures = aot.per_chip_figures(compiled, chip, 1)
    nets = Networks(config)
    d = size_divisor(config.model) * 2
    state = jax.eval_shape(lambda r: init_train_state(nets, r, d, d), jax.random.PRNGKey(0))
    params = tree_bytes(state.g_params) + tree_bytes(state.d_params)
    # Replicated: every chip holds the whole state (parameters and both Adam moments) ...
    assert figures["argument_bytes"] >= tree_bytes(state) >= 3 * params
    # ... and needs at most the state and the gradients (a narrow kernel's tiles can take a few
    # times its size) and a few times one chip's activations (themselves in tiles).
    activations = layer_output_bytes(config, 1)
    bound = 2 * (tree_bytes(state) + params) + 3 * activations + figures["generated_code_bytes"]
    assert figures["per_chip_bytes"] <= bound, (figures, bound)
    assert figures["fits_hbm"] and figures["flops_per_chip_step"] > 0
    rf = figures["roofline"]
    assert rf["step_time_bound_s"] == max(rf["compute_bound_s"], rf["memory_bound_s"]) > 0


def test_the_step_compiles_for_two_chips_with_twice_the_images_each(v5e, demo):
    (devices, chip), (config, four) = v5e, demo
    two = aot.compile_program(config, devices[:2], SIZE, SIZE, per_chip_batch=2)
    # The same replicated state on every chip of both; the batch's share is the only difference.
    args = lambda c: c.memory_analysis().argument_size_in_bytes  # noqa: E731
    assert 0 < args(two) - args(four) < 0.05 * args(four)
    flops = lambda c: aot.per_chip_figures(c, chip, 1)["flops_per_chip_step"]  # noqa: E731
    assert flops(two) == pytest.approx(2 * flops(four), rel=0.05)  # FLOPs per chip follow its images


def collectives(compiled) -> dict:
    """{op: [operand bytes of each]} of the cross-chip operations in a compiled module's HLO."""
    found = {}
    sizes = {"f32": 4, "bf16": 2, "s32": 4, "u32": 4, "pred": 1, "u8": 1, "u16": 2, "f16": 2, "s8": 1}
    for line in compiled.as_text().splitlines():
        match = re.search(r"= (\(.*?\)|\S+) (all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)"
                          r"(-start)?\(", line)
        if match:
            shapes = re.findall(r"(f32|bf16|s32|u32|pred|u8|u16|f16|s8)\[([\d,]*)\]", match.group(1))
            total = sum(sizes[t] * int(np.prod([int(n) for n in dims.split(",") if n] or [1])) for t, dims in shapes)
            found.setdefault(match.group(2), []).append(total)
    return found


def test_the_data_parallel_step_exchanges_only_the_gradients(demo):
    config, compiled = demo
    found = collectives(compiled)
    assert set(found) == {"all-reduce"}, {k: len(v) for k, v in found.items()}
    nets = Networks(config)
    g_params, _, d_params, _ = jax.eval_shape(lambda r: nets.init(r, 32, 32), jax.random.PRNGKey(0))
    gradients = tree_bytes(g_params) + tree_bytes(d_params)
    reduced = sum(found["all-reduce"])
    # The gradients once (XLA combines them into few all-reduces), plus the losses and norms.
    assert gradients <= reduced <= gradients + 2 ** 16, (reduced, gradients)


def test_shard_params_divides_each_chips_state_on_v5e_4x4():
    devices = topology.devices("v5e:4x4")
    assert len(devices) == 16
    config = load_test_config("model.ngf=32", "model.n_downsample_global=2", "model.n_blocks_global=1",
                              "model.ndf=16", "model.num_D=1", "model.n_layers_D=1", "data.label_nc=8",
                              "train.batch_size=16", "train.shard_params=True")
    compiled = aot.compile_program(config, devices, 32, 32, per_chip_batch=1)
    nets = Networks(config)
    state = jax.eval_shape(lambda r: init_train_state(nets, r, 16, 16), jax.random.PRNGKey(0))
    mesh = sharding.make_mesh(devices)
    shards = sharding.state_shardings(state, mesh, True)
    per_chip = sum(tree_bytes(jax.ShapeDtypeStruct(sh.shard_shape(s.shape), s.dtype))
                   for s, sh in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(shards)))
    args = compiled.memory_analysis().argument_size_in_bytes
    assert per_chip < tree_bytes(state) / 6  # most of the state is in arrays big enough to split
    # Each chip holds its shares, not the whole state (which every chip holds when replicated).
    # Their tiles can take several times their bytes: a 16th of a kernel's output channels is a
    # narrow minor dimension, and XLA:TPU pads the minor dimension to 128.
    assert per_chip <= args < tree_bytes(state) / 2, (args, per_chip, tree_bytes(state))
    assert "all-gather" in collectives(compiled)  # the layers gather their parameters where they run


def test_the_oasis_step_compiles_for_v5e_and_exchanges_only_its_gradients_and_batch_statistics(v5e):
    """OASIS's step (a tiny SPADE G with 3D noise, OASIS's D, LabelMix, the moving average of G)
    compiled as `benchmark --topology v5e:2x2` compiles it, one image per chip."""
    devices, chip = v5e
    config = load_test_config(*TINY_OASIS, "train.batch_size=4")
    compiled = aot.compile_program(config, devices, SIZE, SIZE, per_chip_batch=1)
    figures = aot.per_chip_figures(compiled, chip, 1)
    state = jax.eval_shape(TrainProgram(config, (SIZE, SIZE), 1000).init, jax.random.PRNGKey(0))
    assert state.ema_params is not None
    # Replicated: every chip holds the whole state, the moving average of G included.
    assert figures["argument_bytes"] >= tree_bytes(state)
    assert figures["fits_hbm"] and figures["flops_per_chip_step"] > 0
    found = collectives(compiled)
    gradients = tree_bytes(state.g_params) + tree_bytes(state.d_params)
    assert set(found) == {"all-reduce"}, {k: len(v) for k, v in found.items()}
    # The gradients once, plus what the global batch's statistics need: G's batch norm's moments and
    # the class-balancing weights' pixel counts (both over the whole batch), the losses and norms.
    assert gradients <= sum(found["all-reduce"]) <= gradients + 2 ** 16


def test_a_topology_jax_does_not_know_is_a_clear_error():
    with pytest.raises(UserError, match=r"--topology v5e:3x3: .*v5e:2x2"):
        topology.devices("v5e:3x3")
