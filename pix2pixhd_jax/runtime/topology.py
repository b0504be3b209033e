"""TPU topologies without a TPU: their chips as devices that XLA:TPU compiles for, on any machine.

With libtpu installed (`pip install '.[tpu]'`: the version jax's own tpu extra pins), JAX can
describe a TPU slice it is not attached to (`jax.experimental.topologies`): the devices of
"v5e:2x2" or "v5e:16x16" can hold a mesh, a program can be lowered and compiled for them, and
the compiled program's `memory_analysis()` and `cost_analysis()` are XLA:TPU's own (the same
compiler a TPU VM runs), not an estimate from another backend. Large JAX trainers check their
programs this way before they launch on a pod. Nothing runs: the devices cannot execute.

`CHIPS` holds the chips' published figures (peak bf16 FLOP/s, HBM bytes and bandwidth, from
Google Cloud's TPU system-architecture pages) for the roofline bound on a step's time.
"""

import os
from typing import NamedTuple

from pix2pixhd_jax.errors import UserError

INSTALL = ("XLA:TPU's compiler ships in libtpu: pip install '.[tpu]' (or pip install 'jax[tpu]'), the libtpu "
           "version jax's tpu extra pins for the installed jax.")


class Chip(NamedTuple):
    name: str
    peak_bf16_flops: float  # per chip, per second
    hbm_bytes: int
    hbm_bytes_per_s: float


GIB = 2 ** 30
# Published per-chip figures (cloud.google.com/tpu/docs: v4, v5e, v5p, v6e system architecture).
CHIPS = {
    "TPU v4": Chip("v4", 275e12, 32 * GIB, 1228e9),
    "TPU v5 lite": Chip("v5e", 197e12, 16 * GIB, 819e9),
    "TPU v5": Chip("v5p", 459e12, 95 * GIB, 2765e9),
    "TPU v6 lite": Chip("v6e", 918e12, 32 * GIB, 1640e9),
}


def devices(topology: str):
    """One device per chip of a TPU topology named as jax takes it ('v5e:2x2', 'v4:2x2x1',
    'v5p:2x2x1', 'v6e:2x2', ...). Chips with two TensorCores (v4, v5p) come as one device each
    (megacore), as JAX runs them."""
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no metadata server to ask off a TPU VM
    # Every JAX process that starts the TPU backend holds libtpu's lockfile for its life, even
    # where there is no TPU; compiling for a described topology needs no exclusive TPU access.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies
    except ImportError as e:  # pragma: no cover (part of jax)
        raise UserError(f"jax.experimental.topologies is missing ({e}). {INSTALL}") from None
    try:
        try:
            found = topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                                 chip_config_name="megacore").devices
        except RuntimeError as e:  # single-core chips (v5e, v6e) have no megacore config
            if "megacore" not in str(e):
                raise
            found = topologies.get_topology_desc(topology_name=topology, platform="tpu").devices
    except RuntimeError as e:  # jaxlib's errors are RuntimeErrors, with the plugin's text
        text = (str(e).splitlines() or [type(e).__name__])[0]
        if "support not installed" in text or "libtpu" in text.lower():
            raise UserError(f"--topology {topology}: no TPU compiler on this machine ({text}). {INSTALL}") from None
        raise UserError(f"--topology {topology}: {text}. Name a topology as jax takes it: v5e:2x2, v5e:4x4, "
                        "v5e:16x16, v4:2x2x1, v5p:2x2x1, v6e:2x2 (a v5e slice has 2x2 chips per host at least).") from None
    return list(found)


def chip(device) -> Chip:
    """The published figures of a device's chip, or a UserError naming the chips known."""
    kind = getattr(device, "device_kind", str(device))
    if kind not in CHIPS:
        raise UserError(f"no published figures for {kind!r} in runtime/topology.py CHIPS (known: "
                        f"{', '.join(CHIPS)}); add the chip's peak bf16 FLOP/s, HBM size and bandwidth there.")
    return CHIPS[kind]
