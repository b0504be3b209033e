"""Building blocks shared by the networks, matching PyTorch's layers exactly.

Layout is NHWC with HWIO kernels. Every conv has a bias unless a caller says
otherwise (pix2pix's convs before batch norm have none), initialised as the
reference does: weights N(0, 0.02) (its weights_init), biases at PyTorch's
default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pixhd_jax.models.conv import NHWC, conv2d, conv_transpose

conv_init = nn.initializers.normal(stddev=0.02)


def torch_bias_init(fan_in: int):
    """PyTorch's default bias init for a conv with this fan-in (in_channels * kh * kw)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def reflect_pad(x, pad: int):
    """ReflectionPad2d on NHWC."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _flax_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                               dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """nn.Conv's hook: conv2d for the plain 2D case, lax for everything else."""
    plain = (rhs.ndim == 4 and not isinstance(padding, str) and feature_group_count == 1
             and precision is None and not kwargs
             and all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
             and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC))
    if plain:
        return conv2d(lhs, rhs, window_strides, padding)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)


class Conv(nn.Module):
    """Conv2d with PyTorch's zero padding, init and bias."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    zero_bias: bool = False  # pix2pix's init_weights zeroes biases; pix2pixHD keeps PyTorch's
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1] * self.kernel * self.kernel
        return nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            strides=(self.stride, self.stride),
            padding=[(self.padding, self.padding)] * 2,
            use_bias=self.use_bias,
            kernel_init=conv_init,
            bias_init=nn.initializers.zeros if self.zero_bias else torch_bias_init(fan_in),
            dtype=self.dtype,
            conv_general_dilated=_flax_conv_general_dilated,
            name="conv",
        )(x)


class _TorchConvTranspose(nn.Module):
    """The parameters (kernel (kh, kw, out, in), bias) and the op; named 'conv' by its
    owner so that the parameter tree is the one nn.ConvTranspose made (checkpoints)."""

    features: int
    kernel: int
    stride: int
    padding: int
    output_padding: int
    use_bias: bool
    bias_init: Any
    dtype: Any

    @nn.compact
    def __call__(self, x):
        shape = (self.kernel, self.kernel, self.features, x.shape[-1])
        kernel = self.param("kernel", conv_init, shape, jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = conv_transpose(x, kernel, self.stride, self.padding, self.output_padding)
        return y if bias is None else y + bias


class ConvTranspose(nn.Module):
    """ConvTranspose2d(kernel, stride, padding, output_padding) with PyTorch's geometry.

    PyTorch's output is (H-1)*stride - 2*padding + kernel + output_padding. In lax terms
    that is a conv over the stride-dilated input padded by (k-1-p, k-1-p+output_padding)
    with the spatially flipped kernel; 'SAME' would give the size but shift by a pixel.
    The kernel is stored (kh, kw, out, in), i.e. PyTorch's (in, out, kh, kw) transposed
    by (2, 3, 1, 0). On CPU the op runs as stride**2 phase convs (models/conv.py).
    """

    features: int
    kernel: int
    stride: int
    padding: int
    output_padding: int = 0
    use_bias: bool = True
    zero_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        # PyTorch's default init reads fan_in from weight.size(1) * k * k = out_channels * k * k.
        fan_in = self.features * self.kernel * self.kernel
        return _TorchConvTranspose(
            self.features, self.kernel, self.stride, self.padding, self.output_padding,
            self.use_bias, nn.initializers.zeros if self.zero_bias else torch_bias_init(fan_in),
            self.dtype, name="conv",
        )(x)


# ----- rematerialisation --------------------------------------------------------------

# train.remat: which activations the backward pass recomputes instead of keeping.
#   none    keep everything the forward pass made (fastest, most memory);
#   blocks  G's residual blocks are recomputed (at the coarsest level in the global generator:
#           little memory for their FLOPs);
#   layers  every layer of G, E, D and VGG19 (conv, norm, activation) is recomputed from its
#           input, so the backward pass keeps one tensor per layer, in the compute dtype, except
#           the residual blocks wider than WIDE_BLOCK channels (the global generator's 1024-channel
#           blocks: recomputing a layer costs 2*9*channels FLOPs per value it saves, theirs the most
#           for the least memory), which keep theirs;
#   full    as layers, and every residual block too;
#   a jax.checkpoint_policies name (e.g. dots_saveable): every layer as with full, keeping what
#           that policy saves (dots_saveable: the conv outputs; norms and activations recomputed).
REMAT_MODES = ("none", "blocks", "layers", "full")
WIDE_BLOCK = 256


def remat_policy(value) -> str:
    """train.remat as one of REMAT_MODES or a jax.checkpoint_policies name (true/false: configs and
    workdirs from before the policies, 'blocks' and 'none')."""
    if isinstance(value, bool) or value is None:
        return "blocks" if value else "none"
    value = {"true": "blocks", "false": "none"}.get(str(value).lower(), str(value))
    if value in REMAT_MODES or _jax_policy(value) is not None:
        return value
    raise ValueError(f"train.remat={value!r} is not one of {', '.join(REMAT_MODES)} or a jax.checkpoint_policies "
                     "policy such as dots_saveable or nothing_saveable")


def _jax_policy(name: str):
    policy = getattr(jax.checkpoint_policies, name, None)
    # Only the ready policies (prim, *args, **params) -> bool, not the factories that make one.
    factories = ("save_only_these_names", "save_any_names_but_these", "save_anything_except_these_names",
                 "save_and_offload_only_these_names", "save_from_both_policies", "offload_dot_with_no_batch_dims")
    return None if policy is None or name.startswith("_") or name in factories else policy


def layer_remat(fn, policy: str, static_argnums=()):
    """`fn(module, *args)`, one layer of a network, recomputed in the backward pass from its inputs
    under policy 'full' (or with what a jax.checkpoint_policies policy saves); as it is otherwise.
    Parameter names are unchanged (flax's lifted remat). static_argnums count the module: in
    (module, x, train), train is 2."""
    policy = remat_policy(policy)
    if policy in ("none", "blocks"):
        return fn
    return nn.remat(fn, policy=None if policy in REMAT_MODES else _jax_policy(policy), static_argnums=static_argnums)


def block_remat(cls, policy: str, width: int):
    """A residual block class of `width` channels, recomputed in the backward pass under every
    policy but 'none', and under 'layers' only when it is at most WIDE_BLOCK channels wide."""
    policy = remat_policy(policy)
    if policy == "none" or (policy == "layers" and width > WIDE_BLOCK):
        return cls
    # static_argnums counts self: (self, x, train) -> train is 2.
    jax_policy = None if policy in REMAT_MODES else _jax_policy(policy)
    return nn.remat(cls, static_argnums=(2,), policy=jax_policy)


# ----- normalisation ----------------------------------------------------------------------


def instance_norm(x, eps: float = 1e-5):
    """InstanceNorm2d(affine=False): per sample and channel over H, W; statistics in f32.

    Checkpointed: the backward pass keeps only x (in its dtype: bf16 under train.dtype=bfloat16)
    and recomputes the float32 statistics and normalised values, which would otherwise be kept
    at twice a bf16 activation's size."""
    return _instance_norm(x, eps)


@functools.partial(jax.checkpoint, static_argnums=(1,))
def _instance_norm(x, eps: float):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=(1, 2), keepdims=True)
    var = jnp.square(x32 - mean).mean(axis=(1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


class BatchNorm(nn.Module):
    """PyTorch's BatchNorm2d (momentum 0.1, eps 1e-5) as the reference trains and tests it.

    Training normalises with the batch's statistics and updates the running ones as torch does,
    the variance unbiased (n / (n - 1)). Inference: `inference_stats` 'running' uses the running
    statistics (torch's eval()); 'batch' normalises each image with its own statistics, which is
    what the reference's test.py computes, since it never calls eval() and tests one image at a
    time. Parameters and statistics keep flax's names (scale, bias; mean, var), in float32.
    `affine=False` is BatchNorm2d(affine=False): no scale or bias (SPADE's parameter-free norm).
    """

    inference_stats: str = "running"
    momentum: float = 0.1
    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    affine: bool = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        if self.affine:
            # weights_init: scale ~ N(1, 0.02), bias 0.
            scale = self.param("scale", lambda k, s: 1.0 + 0.02 * jax.random.normal(k, s, jnp.float32), (c,))
            bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        else:
            scale, bias = 1.0, 0.0
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        x32 = x.astype(jnp.float32)
        if train or self.inference_stats == "batch":
            axes = (0, 1, 2) if train else (1, 2)
            mean = x32.mean(axes, keepdims=True)
            var = jnp.square(x32 - mean).mean(axes, keepdims=True)
            if train and not self.is_initializing():
                n = x.shape[0] * x.shape[1] * x.shape[2]
                m = self.momentum
                ra_mean.value = (1 - m) * ra_mean.value + m * mean.reshape(c)
                ra_var.value = (1 - m) * ra_var.value + m * var.reshape(c) * (n / max(n - 1, 1))
        elif self.inference_stats == "running":
            mean, var = ra_mean.value, ra_var.value
        else:
            raise ValueError(f"inference_stats={self.inference_stats!r} is not 'running' or 'batch'")
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(self.dtype)


class Norm(nn.Module):
    """The reference's get_norm_layer: 'instance' (no affine, no running stats) or 'batch'.
    `inference_stats` is BatchNorm's (what batch norm uses outside training)."""

    kind: str = "instance"
    dtype: Any = jnp.float32
    inference_stats: str = "running"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.kind == "instance":
            return instance_norm(x)
        if self.kind == "batch":
            return BatchNorm(self.inference_stats, dtype=self.dtype, name="bn")(x, train)
        raise ValueError(f"model.norm={self.kind!r} is not 'instance' or 'batch'")


def avg_pool_exclude_pad(x, window: int = 3, stride: int = 2, pad: int = 1):
    """AvgPool2d(3, stride=2, padding=1, count_include_pad=False) on NHWC."""
    dims, strides = (1, window, window, 1), (1, stride, stride, 1)
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    x32 = x.astype(jnp.float32)
    total = jax.lax.reduce_window(x32, 0.0, jax.lax.add, dims, strides, padding)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), jnp.float32)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, dims, strides, padding)
    return (total / count).astype(x.dtype)


class ResnetBlock(nn.Module):
    """x + [reflect-pad 1, conv 3x3, norm, ReLU, (dropout 0.5), reflect-pad 1, conv 3x3, norm]."""

    dim: int
    norm: str = "instance"
    use_dropout: bool = False
    dtype: Any = jnp.float32
    inference_stats: str = "running"

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = Conv(self.dim, 3, dtype=self.dtype, name="conv_0")(reflect_pad(x, 1))
        y = nn.relu(Norm(self.norm, self.dtype, self.inference_stats, name="norm_0")(y, train))
        if self.use_dropout:
            y = nn.Dropout(0.5, deterministic=not train)(y)
        y = Conv(self.dim, 3, dtype=self.dtype, name="conv_1")(reflect_pad(y, 1))
        y = Norm(self.norm, self.dtype, self.inference_stats, name="norm_1")(y, train)
        return x + y


def count_params(tree) -> int:
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(tree))


Shape = Sequence[int]
