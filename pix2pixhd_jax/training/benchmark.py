"""`pix2pixhd-jax benchmark`: the real train step (and synthesis) on random on-device batches.

No TensorFlow and no dataset: the state is filled from numpy by parameter name
(weights/filled.py: shapes from jax.eval_shape, so no init program runs), batches are random block label maps made
on the device, and the VGG19 (when the config's VGG loss is on) gets random weights of
the right shapes: speed does not depend on the values. Prints one JSON line.

`--compile-only` compiles the accelerator's program (lax's convolutions, no CPU path) for
this machine's backend from shapes alone, runs nothing, and reports XLA's memory analysis:
`estimated_device_bytes` = arguments + outputs + temporaries - what donation aliases. From a
CPU compile it is an estimate of the program's own buffers: it leaves out cuDNN's
workspaces, the allocator's fragmentation and XLA:GPU's different fusion and scheduling.
"""

import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from pix2pixhd_jax.data.synthetic.blocks import block_maps, grid_shape
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.models import conv
from pix2pixhd_jax.models.pix2pixhd import compute_dtype, generate, model_inputs, photo_bits, remat_mode, size_divisor
from pix2pixhd_jax.models.pixels import level_dtype
from pix2pixhd_jax.models.vgg19 import VGG19Features
from pix2pixhd_jax.runtime import host_memory
from pix2pixhd_jax.training.train import TrainProgram
from pix2pixhd_jax.weights.filled import fill_like


def random_batch(config, batch: int, height: int, width: int, seed: int = 0):
    """A batch as the input pipeline carries it (data/pipeline.py), made on the device: block
    label maps (16x16 blocks, uint8 ids; data/synthetic/blocks.py), instance ids label*1000+block
    (uint16), a random photo (its uint8 levels, uint16 for 16-bit data)."""
    data = config.data
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    bits = photo_bits(config)
    out = {"image": jax.random.randint(k2, (batch, height, width, data.output_nc), 0, 2 ** bits).astype(
        level_dtype(bits, jnp))}
    if data.label_nc:
        grid = jax.random.randint(k1, (batch,) + grid_shape(height, width, 16), 0, data.label_nc)
        ids, inst = block_maps(grid, height, width, 16, xp=jnp)
        out["label_ids"] = ids.astype(jnp.uint8 if data.label_nc <= 256 else jnp.uint16)
    else:
        out["label"] = jax.random.randint(k1, (batch, height, width, data.input_nc), 0, 256).astype(jnp.uint8)
        inst = jnp.zeros((batch, height, width), jnp.int32)
    if data.use_instance:
        out["inst"] = inst.astype(jnp.uint16)
    return out


def _peak_memory():
    """Peak device bytes (accelerators) or the process's peak RSS (CPU), and what it is."""
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001  (backends without memory stats)
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale), "host peak RSS"


def flops_of(compiled):
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def filled_state(program: TrainProgram):
    """The program's train state filled from numpy (no init program runs; an image pool, where the
    config uses one, empty and sized for the program's image size)."""
    shapes = jax.eval_shape(program.init, jax.random.PRNGKey(0))
    return jax.device_put(fill_like(shapes)).replace(rng=jax.random.PRNGKey(0))


def train_program(config, height: int, width: int):
    """(the program `train` runs at height x width: pix2pixHD's step or OASIS's, VGG19's variables'
    shapes where the config's VGG loss is on, else {})."""
    vgg = None if config.loss.no_vgg_loss else VGG19Features(remat=remat_mode(config.train),
                                                             dtype=compute_dtype(config.train))
    program = TrainProgram(config, (height, width), steps_per_epoch=1000, vgg=vgg)
    vgg_shapes = {} if vgg is None else jax.eval_shape(vgg.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    return program, vgg_shapes


def _check_sizes(config, height, width):
    divisor = size_divisor(config.model)
    if height % divisor or width % divisor:
        raise UserError(f"--height {height} --width {width}: both must be multiples of {divisor} for this generator.")


def _describe(config, height, width, batch) -> dict:
    return {"config": config.name, "height": height, "width": width, "batch": batch,
            "dtype": config.train.dtype, "remat": remat_mode(config.train), "vgg": not config.loss.no_vgg_loss,
            "netG": config.model.netG, "netD": config.model.netD, "num_D": config.model.num_D}


def memory_estimate(compiled) -> dict:
    """XLA's memory analysis of a compiled program: its buffers by kind and their sum."""
    m = compiled.memory_analysis()
    parts = {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
             "temp_bytes": int(m.temp_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes)}
    parts["estimated_device_bytes"] = (parts["argument_bytes"] + parts["output_bytes"] + parts["temp_bytes"]
                                       - parts["alias_bytes"])
    return parts


def compile_only(config, height: int, width: int, batch: int) -> dict:
    """Compile the accelerator's train step (lax's convolutions) from shapes; run nothing."""
    _check_sizes(config, height, width)
    with conv.lax_ops():
        program, vgg_vars = train_program(config, height, width)
        state = jax.eval_shape(program.init, jax.random.PRNGKey(0))
        data = jax.eval_shape(lambda: random_batch(config, batch, height, width))
        step_fn = jax.jit(program.step, donate_argnums=(0,))
        start = time.perf_counter()
        lowered = step_fn.lower(state, data, vgg_vars)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    return {"what": "train_step_compile", **_describe(config, height, width, batch), **memory_estimate(compiled),
            "compile_s": round(compile_s, 2), "flops_per_step": flops_of(compiled),
            "estimate": f"XLA memory analysis of a {jax.default_backend()} compile of the accelerator program",
            "device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
            "python": platform.python_version()}


def benchmark(config, height: int, width: int, batch: int, steps: int = 20, warmup: int = 3,
              synthesis: bool = True) -> dict:
    _check_sizes(config, height, width)
    if steps < 1 or warmup < 0:
        raise UserError(f"--steps {steps} must be >= 1 and --warmup {warmup} >= 0.")
    host_memory.keep_freed_memory()
    program, vgg_shapes = train_program(config, height, width)
    nets = program.nets
    state = filled_state(program)
    vgg_vars = jax.device_put(fill_like(vgg_shapes)) if vgg_shapes else {}
    data = random_batch(config, batch, height, width)
    step_fn = jax.jit(program.step, donate_argnums=(0,))

    start = time.perf_counter()
    compiled = step_fn.lower(state, data, vgg_vars).compile()
    compile_s = time.perf_counter() - start
    flops = flops_of(compiled)

    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        state, metrics, _ = compiled(state, data, vgg_vars)
        jax.block_until_ready(metrics)  # each step timed alone (the loop reads its metrics a step late)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    peak, peak_kind = _peak_memory()
    result = {
        "what": "train_step", **_describe(config, height, width, batch),
        "median_step_s": round(median, 5), "images_per_s": round(batch / median, 3),
        "compile_s": round(compile_s, 2), "steps": steps, "warmup": warmup,
        "flops_per_step": flops, "tflops_per_s": round(flops / median / 1e12, 3) if flops else None,
        "peak_memory_bytes": peak, "peak_memory_kind": peak_kind,
        "xla_estimated_device_bytes": memory_estimate(compiled)["estimated_device_bytes"],
        "device": str(jax.devices()[0].device_kind), "device_count": jax.device_count(),
        "jax": jax.__version__, "python": platform.python_version(),
    }
    if synthesis:
        result.update(_synthesis_latency(nets, state, data, steps))
    return result


def _synthesis_latency(nets, state, data, repeats):
    """G alone (no gradients) on one label map of the benchmark's size, compiled once."""
    config = nets.config
    one = model_inputs({k: v[:1] for k, v in data.items()}, config)
    feats = None
    if nets.E is not None:
        feats = jnp.zeros(one["image"].shape[:3] + (config.model.feat_num,), jnp.float32)
    run = jax.jit(lambda p, s, b, f: generate(nets, p, s, b, train=False, rng=jax.random.PRNGKey(0), features=f)[0])
    params, stats = state.g_params, state.g_stats
    start = time.perf_counter()
    jax.block_until_ready(run(params, stats, one, feats))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        jax.block_until_ready(run(params, stats, one, feats))
        times.append(time.perf_counter() - start)
    return {"synthesis_median_s": round(statistics.median(times), 5), "synthesis_first_call_s": round(compile_s, 2)}
