"""`pix2pixhd-jax benchmark --topology NAME`: the programs compiled by XLA:TPU for a TPU slice,
on this machine, ahead of time (runtime/topology.py).

The train step is the one `train` runs: `TrainProgram` (the same networks, init and step), the
mesh `train` makes over the slice's chips, the state's shardings (`train.shard_params`), the
batch split over the chips and the state donated (`loop.jit_step`); the global batch is the
per-chip batch times the chips. Synthesis is `photo_program`, the program synthesize, the editor
and export run, with the batch split over the chips. Nothing runs; the result is XLA:TPU's own
memory analysis per chip (arguments, outputs, temporaries, what donation aliases, generated
code), its cost analysis per chip and step (FLOPs, bytes accessed), and a roofline bound on the
step time from the chip's published peak bf16 FLOP/s and HBM bandwidth: the step cannot be faster
than max(FLOPs / peak, bytes accessed / bandwidth).
"""

import importlib.metadata
import platform
import time

import jax
import jax.numpy as jnp

from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.inference.synthesis import photo_program
from pix2pixhd_jax.models.pix2pixhd import INFERENCE_DTYPES, Networks, cast_for_inference, remat_mode, size_divisor
from pix2pixhd_jax.runtime import loop, sharding, topology
from pix2pixhd_jax.training.benchmark import random_batch, train_program

WHAT = ("train_step", "synthesis")


def _with_sharding(shapes, shardings):
    """Shapes with their shardings: one per leaf (a tree like `shapes`), or one for all."""
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree_util.tree_map(lambda _: shardings, shapes)
    return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def _train_step(config, mesh, height: int, width: int, global_batch: int):
    program, vgg_vars = train_program(config, height, width)
    shapes = jax.eval_shape(program.init, jax.random.PRNGKey(0))
    state_sharding = sharding.state_shardings(shapes, mesh, config.train.shard_params)
    state = _with_sharding(shapes, state_sharding)
    batch = _with_sharding(jax.eval_shape(lambda: random_batch(config, global_batch, height, width)),
                           sharding.batch_sharding(mesh))
    vgg_vars = _with_sharding(vgg_vars, sharding.replicated(mesh))
    step = loop.jit_step(program.step, mesh, state_sharding, 1, has_outputs=True)
    return step.lower(state, batch, vgg_vars)


def _synthesis(config, mesh, height: int, width: int, global_batch: int):
    dtype = str(config.train.dtype)
    nets = Networks(config, INFERENCE_DTYPES[dtype])
    g_params, g_stats, _, _ = jax.eval_shape(lambda r: nets.init(r, 32, 32), jax.random.PRNGKey(0))
    g_vars = jax.eval_shape(lambda p, s: cast_for_inference({"params": p, "batch_stats": s}, INFERENCE_DTYPES[dtype]),
                            g_params["generator"], g_stats["generator"])
    replicated, split = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    g_vars = _with_sharding(g_vars, replicated)
    batch = jax.eval_shape(lambda: random_batch(config, global_batch, height, width))
    label = batch["label_ids"] if config.data.label_nc else batch["label"]
    inst = batch.get("inst")
    feats = None
    if nets.E is not None:
        feats = jax.ShapeDtypeStruct((global_batch, height, width, int(config.model.feat_num)), jnp.float32)
    noise = jax.ShapeDtypeStruct((global_batch, nets.z_dim), jnp.float32) if nets.z_dim else None  # one z a picture
    args = [_with_sharding(x, split) if x is not None else None for x in (label, inst, feats, noise)]
    run = jax.jit(photo_program(nets), in_shardings=(replicated,) + tuple(split if x is not None else None
                                                                          for x in (label, inst, feats, noise)),
                  out_shardings=split)
    return run.lower(g_vars, *args)


class OutOfMemory(Exception):
    """XLA:TPU refused the program: it needs more memory than a chip's HBM (its message)."""


def lower_program(config, devices, height: int, width: int, per_chip_batch: int = 1, what: str = "train_step"):
    """`what` lowered for a mesh over `devices` (per_chip_batch images each)."""
    if what not in WHAT:
        raise UserError(f"--what {what!r}: one of {', '.join(WHAT)}.")
    divisor = size_divisor(config.model)
    if height % divisor or width % divisor:
        raise UserError(f"--height {height} --width {width}: both must be multiples of {divisor} for this generator.")
    if per_chip_batch < 1:
        raise UserError(f"--batch {per_chip_batch}: images per chip, at least 1.")
    mesh = sharding.make_mesh(devices)
    build = _train_step if what == "train_step" else _synthesis
    return build(config, mesh, height, width, per_chip_batch * len(devices))


def compile_program(config, devices, height: int, width: int, per_chip_batch: int = 1, what: str = "train_step"):
    """`what` lowered for a mesh over `devices` (per_chip_batch images each) and compiled."""
    lowered = lower_program(config, devices, height, width, per_chip_batch, what)
    try:
        return lowered.compile()
    except Exception as e:  # noqa: BLE001  (XLA:TPU's out-of-memory is a compile error)
        text = str(e)
        if "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text:
            raise OutOfMemory(text.splitlines()[0][:600]) from None
        raise


def compile_for_topology(config, topology_name: str, height: int, width: int, per_chip_batch: int = 1,
                         what: str = "train_step") -> dict:
    """Compile `what` for the chips of `topology_name` (per_chip_batch images per chip); one record.
    A program that does not fit a chip is a record too (compiles: false, XLA:TPU's message)."""
    devices = topology.devices(topology_name)
    chip = topology.chip(devices[0])
    record = _describe(config, what, topology_name, devices, chip, height, width, per_chip_batch)
    start = time.perf_counter()
    try:
        compiled = compile_program(config, devices, height, width, per_chip_batch, what)
    except OutOfMemory as e:
        return {**record, "compiles": False, "error": str(e), "compile_s": round(time.perf_counter() - start, 1)}
    return {**record, "compiles": True, **per_chip_figures(compiled, chip, per_chip_batch),
            "compile_s": round(time.perf_counter() - start, 1)}


def per_chip_figures(compiled, chip, per_chip_batch: int) -> dict:
    """XLA:TPU's memory and cost analysis of a compiled SPMD program (per chip) and the roofline."""
    m = compiled.memory_analysis()
    memory = {"argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
              "temp_bytes": int(m.temp_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes),
              "generated_code_bytes": int(m.generated_code_size_in_bytes)}
    memory["per_chip_bytes"] = (memory["argument_bytes"] + memory["output_bytes"] - memory["alias_bytes"]
                                + memory["temp_bytes"] + memory["generated_code_bytes"])
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops, accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    compute_s, memory_s = flops / chip.peak_bf16_flops, accessed / chip.hbm_bytes_per_s
    bound = max(compute_s, memory_s)
    return {**memory, "per_chip_gib": round(memory["per_chip_bytes"] / 2 ** 30, 3),
            "chip_hbm_gib": round(chip.hbm_bytes / 2 ** 30, 2), "fits_hbm": memory["per_chip_bytes"] <= chip.hbm_bytes,
            "flops_per_chip_step": flops, "bytes_accessed_per_chip_step": accessed,
            # XLA:TPU's own time estimate, where it gives one (it can be negative: no estimate).
            "xla_optimal_seconds": cost["optimal_seconds"] if cost.get("optimal_seconds", 0) > 0 else None,
            "roofline": {"peak_bf16_flops": chip.peak_bf16_flops, "hbm_bytes_per_s": chip.hbm_bytes_per_s,
                         "compute_bound_s": compute_s, "memory_bound_s": memory_s, "step_time_bound_s": bound,
                         "images_per_s_per_chip_bound": round(per_chip_batch / bound, 2) if bound else None}}


def _describe(config, what, topology_name, devices, chip, height, width, per_chip_batch) -> dict:
    try:
        libtpu = importlib.metadata.version("libtpu")
    except importlib.metadata.PackageNotFoundError:
        libtpu = None
    return {"what": f"{what}_tpu_compile", "config": config.name, "topology": topology_name,
            "chips": len(devices), "device_kind": devices[0].device_kind, "chip": chip.name,
            "height": height, "width": width, "per_chip_batch": per_chip_batch,
            "global_batch": per_chip_batch * len(devices), "dtype": str(config.train.dtype),
            "remat": remat_mode(config.train), "shard_params": bool(config.train.shard_params),
            "vgg": not config.loss.no_vgg_loss, "netG": config.model.netG, "netD": config.model.netD,
            "num_D": int(config.model.num_D), "jax": jax.__version__, "libtpu": libtpu,
            "python": platform.python_version()}
