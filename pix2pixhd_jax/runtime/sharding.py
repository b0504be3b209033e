"""Data parallelism over a device mesh (jax.jit + NamedSharding; the same code on one
device, many local devices and many hosts).

The batch is split on the mesh's 'data' axis; parameters and optimizer state are
replicated, or with `train.shard_params` split along their last axis over the same
devices (ZeRO/FSDP style: XLA gathers them where a layer needs them), which divides
the ~180M-parameter generator's memory and its Adam state by the device count.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pix2pixhd_jax.errors import UserError

DATA = "data"
# Arrays smaller than this stay replicated: splitting them saves nothing.
_MIN_SHARDED_SIZE = 2 ** 14


def make_mesh(devices=None) -> Mesh:
    """A 1-D 'data' mesh over `devices` (default: every device of every process), ordered by
    jax.make_mesh for the interconnect. Its axis is Auto: the programs state their shardings
    at jit's boundary and XLA propagates them inside."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA,), (AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _leaf_sharding(x, mesh: Mesh, shard: bool) -> NamedSharding:
    n = mesh.shape[DATA]
    shape = getattr(x, "shape", ())
    if shard and n > 1 and len(shape) >= 1 and np.prod(shape) >= _MIN_SHARDED_SIZE and shape[-1] % n == 0:
        return NamedSharding(mesh, P(*([None] * (len(shape) - 1)), DATA))
    return NamedSharding(mesh, P())


def state_shardings(state, mesh: Mesh, shard_params: bool):
    """A sharding for every leaf of a train state (shapes or arrays)."""
    return jax.tree_util.tree_map(lambda x: _leaf_sharding(x, mesh, shard_params), state)


def check_batch(global_batch: int, mesh: Mesh, setting: str = "train.batch_size"):
    n = mesh.shape[DATA]
    if global_batch < 1:
        raise UserError(f"{setting}={global_batch}: the global batch must be at least 1 (a multiple of the {n} "
                        f"device{'s' if n > 1 else ''}); set --config.{setting}={n} or more.")
    if global_batch % n:
        raise UserError(
            f"{setting}={global_batch} is not divisible by the {n} devices of the 'data' mesh axis; "
            f"use a multiple of {n}."
        )


def global_batch(local_batch: dict, mesh: Mesh, keys=None) -> dict:
    """This process's host batch -> global jax.Arrays sharded on 'data' (multi-host too); arrays
    already on the devices (a benchmark's resident batch) pass as they are."""
    sharding = batch_sharding(mesh)
    out = {}
    for key, value in local_batch.items():
        if keys is not None and key not in keys:
            continue
        if isinstance(value, jax.Array):
            out[key] = value
        elif isinstance(value, np.ndarray) and value.dtype != object:
            out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out
