"""What a lowered program's StableHLO holds, read from its text: convolutions, their operand
dtypes, host callbacks. The lowering and export tests share it."""

import re

import jax
from jax import export

_TENSOR = r"tensor<(?:[\d?]+x)*(\w+)>"
_CONV = re.compile(r"stablehlo\.convolution\(.*?:\s*\(" + _TENSOR + r",\s*" + _TENSOR + r"\)")


def lowered_text(fn, args, platform: str) -> str:
    """StableHLO of jit(fn)(*args) lowered for `platform` on this machine (args: ShapeDtypeStructs
    or arrays); traced afresh, so switches read at trace time take effect."""
    return export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()


def convolutions(text: str) -> int:
    return text.count("stablehlo.convolution")


def conv_operand_dtypes(text: str) -> set:
    """The element types of every convolution's two operands."""
    return {t for line in text.splitlines() if "stablehlo.convolution" in line
            for t in _CONV.search(line).groups()}


def host_callbacks(text: str) -> list:
    return re.findall(r"custom_call @(\w*callback\w*)", text)


def conv_layers(params) -> int:
    """Conv layers in a parameter tree: every 'kernel' under a 'conv' module."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return sum(1 for path, _ in paths
               if str(getattr(path[-1], "key", "")) == "kernel" and str(getattr(path[-2], "key", "")) == "conv")
