"""Data parallelism over a device mesh (jax.jit + NamedSharding; the same code on one
device, many local devices and many hosts).

The batch is split on the mesh's 'data' axis; parameters and optimizer state are
replicated, or with `train.shard_params` split along one axis over the same devices
(ZeRO/FSDP style: XLA gathers them where a layer needs them), which divides the
~180M-parameter generator's memory and its Adam state by the device count.
"""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pix2pixhd_jax.errors import UserError

DATA = "data"
# Arrays smaller than this stay replicated: splitting them saves nothing.
_MIN_SHARDED_SIZE = 2 ** 14
# XLA:TPU stores an array's two minor axes in tiles of (8, 128) elements: a shard whose last axis
# is narrower than 128 (a 1024-channel kernel's output channels over 16 chips: 64) takes the
# bytes of 128, and over 256 chips sharding the last axis would save nothing at all.
_TILE = (8, 128)


def _tiled_elements(shape) -> int:
    up = lambda n, m: -(-n // m) * m  # noqa: E731
    if len(shape) == 1:
        return up(shape[0], _TILE[1])
    return int(np.prod(shape[:-2])) * up(shape[-2], _TILE[0]) * up(shape[-1], _TILE[1])


def split_axis(shape, n: int):
    """The axis of `shape` to split over n devices: of those n divides, the one whose shards take
    the fewest elements in TPU tiles (the last such axis among equals); None where n divides none."""
    candidates = [a for a in range(len(shape)) if shape[a] % n == 0]
    if not candidates:
        return None

    def tiled(axis):
        shard = list(shape)
        shard[axis] //= n
        return _tiled_elements(shard)

    return min(reversed(candidates), key=tiled)


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
    axis = split_axis(shape, n) if shard and n > 1 and len(shape) >= 1 and np.prod(shape) >= _MIN_SHARDED_SIZE else None
    if axis is None:
        return NamedSharding(mesh, P())
    return NamedSharding(mesh, P(*[DATA if a == axis else None for a in range(len(shape))]))


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
