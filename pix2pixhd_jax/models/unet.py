"""pix2pix's U-Net generator (Isola et al. 2017), the baseline pix2pixHD compares against.

A faithful NHWC port of `UnetGenerator` / `UnetSkipConnectionBlock` from
junyanz/pytorch-CycleGAN-and-pix2pix (`unet_256`: num_downs=8, `unet_128`: num_downs=7).

The reference nests blocks recursively; here the same network is written as a flat
encoder/decoder loop over levels i = 0 (outermost) .. num_downs-1 (innermost), with
parameters named per level:

    down_{i}/conv/kernel[, bias]      Conv2d(k4, s2, p1)            every level
    down_norm_{i}/bn/...              norm after the down conv      0 < i < num_downs-1
    up_{i}/conv/kernel[, bias]        ConvTranspose2d(k4, s2, p1)   every level
    up_norm_{i}/bn/...                norm after the up conv        i > 0

Level i (block from the outside in):
    i = 0            : downconv -> [inner] -> ReLU -> upconv(bias) -> Tanh          (no skip)
    0 < i < n-1      : LeakyReLU(0.2) -> downconv -> norm -> [inner] -> ReLU -> upconv -> norm
                       [-> Dropout(0.5) for the num_downs-5 ngf*8 levels 4..n-2], then concat([x, y])
    i = n-1          : LeakyReLU(0.2) -> downconv -> ReLU -> upconv -> norm, then concat([x, y])
Channels: inner(i) = ngf * min(2**i, 8); outer(0) = output_nc, outer(i) = inner(i-1).
Convs before a norm have a bias only when norm is 'instance' (pix2pix's `use_bias`), the
outermost down conv included; the outermost up conv always has one.

Note on the reference's in-place LeakyReLU: `torch.cat([x, self.model(x)], 1)` there
concatenates x *after* the block's in-place LeakyReLU has overwritten it, so the skip carries
leaky_relu(x) rather than x. Every skip concat is immediately followed by the parent's ReLU,
and relu(leaky_relu(x)) == relu(x), so the plain concat here computes the same function.

Initialisation is pix2pix's init_weights('normal', 0.02): conv/deconv weights N(0, 0.02),
**biases 0** (layers' `zero_bias=True`; unlike pix2pixHD, which keeps PyTorch's default uniform biases), BatchNorm
scale N(1, 0.02) and bias 0.

`train` drives BatchNorm (batch statistics and updates to the 'batch_stats' collection when
True; apply with `mutable=['batch_stats']`) and Dropout (needs a 'dropout' rng when True).
pix2pix uses dropout as the generator's only noise source, and its test.py runs the
generator in *train mode by default* (dropout on and batch statistics; `--eval` switches to
running statistics without dropout), so callers choose: `train=True` reproduces pix2pix's
default test behaviour, `train=False` is the deterministic eval mode.
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.models.layers import Conv, ConvTranspose, Norm


def _check_num_downs(num_downs: int):
    if num_downs < 5:
        raise ValueError(
            f"num_downs={num_downs} must be >= 5: pix2pix's UnetGenerator builds 5 levels "
            "whatever smaller value it is given (unet_128 is 7, unet_256 is 8)"
        )


def _inner_nc(ngf: int, i: int) -> int:
    return ngf * min(2**i, 8)


class UnetGenerator(nn.Module):
    """pix2pix's UnetGenerator on NHWC images in [-1, 1]; output (B, H, W, output_nc) in [-1, 1].

    H and W must be divisible by 2**num_downs. See the module docstring for structure,
    initialisation and the meaning of `train`.
    """

    output_nc: int = 3
    num_downs: int = 8
    ngf: int = 64
    norm: str = "batch"
    use_dropout: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, ngf = self.num_downs, self.ngf
        _check_num_downs(n)
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm={self.norm!r} is not 'batch' or 'instance'")
        if x.ndim != 4:
            raise ValueError(f"UnetGenerator expects NHWC input, got shape {x.shape}")
        div = 2**n
        h, w = x.shape[1], x.shape[2]
        if h % div or w % div:
            raise ValueError(
                f"UnetGenerator(num_downs={n}) needs height and width divisible by 2**{n} = {div}; "
                f"got {h}x{w} (H x W)"
            )
        use_bias = self.norm == "instance"
        x = x.astype(self.dtype)

        # Encoder: skips[i] is level i's down-path output = the input of level i+1.
        skips = []
        y = x
        for i in range(n):
            if i > 0:
                y = nn.leaky_relu(y, 0.2)
            y = Conv(
                _inner_nc(ngf, i), 4, 2, 1, use_bias=use_bias, zero_bias=True, dtype=self.dtype, name=f"down_{i}"
            )(y)
            if 0 < i < n - 1:
                y = Norm(self.norm, self.dtype, name=f"down_norm_{i}")(y, train)
            skips.append(y)

        # Decoder, from the innermost level out.
        for i in reversed(range(n)):
            outer = self.output_nc if i == 0 else _inner_nc(ngf, i - 1)
            y = nn.relu(y)
            y = ConvTranspose(
                outer, 4, 2, 1, use_bias=True if i == 0 else use_bias, zero_bias=True, dtype=self.dtype,
                name=f"up_{i}",
            )(y)
            if i == 0:
                return jnp.tanh(y.astype(jnp.float32))
            y = Norm(self.norm, self.dtype, name=f"up_norm_{i}")(y, train)
            if self.use_dropout and 4 <= i <= n - 2:
                y = nn.Dropout(0.5, deterministic=not train)(y)
            y = jnp.concatenate([skips[i - 1], y], axis=-1)


def _torch_level_paths(num_downs: int, prefix: str = "model."):
    """The Sequential prefix of each level in a pix2pix UnetGenerator state dict.

    UnetGenerator.model is the outermost UnetSkipConnectionBlock, whose layers live in its
    `.model` Sequential; the inner block sits at index 1 of the outermost Sequential and at
    index 3 of every middle one.
    """
    paths = [prefix + "model"]
    for i in range(1, num_downs):
        paths.append(f"{paths[-1]}.{1 if i == 1 else 3}.model")
    return paths


def _torch_level_indices(i: int, n: int):
    """(down conv, down norm, up conv, up norm) indices inside level i's Sequential (None: absent)."""
    if i == 0:  # [downconv, submodule, ReLU, upconv, Tanh]
        return 0, None, 3, None
    if i == n - 1:  # [LeakyReLU, downconv, ReLU, upconv, upnorm]
        return 1, None, 3, 4
    # [LeakyReLU, downconv, downnorm, submodule, ReLU, upconv, upnorm, (Dropout)]
    return 1, 2, 5, 6


def load_torch_unet(
    state_dict: Mapping[str, Any],
    num_downs: int,
    norm: str = "batch",
    prefix: str = "model.",
) -> dict:
    """Map a pix2pix UnetGenerator state dict to flax variables {'params', 'batch_stats'}.

    `state_dict` maps names such as `model.model.0.weight` or `model.model.1.model.2.running_mean`
    to arrays (numpy or CPU torch tensors). input_nc, output_nc and ngf are read from the
    outermost convs; every array is checked against the shape UnetGenerator(...) would create.
    The reference's `use_dropout` adds no parameters, so it need not be given. Raises KeyError
    naming the first missing key, ValueError naming the first mismatching shape or the first
    key left unused (`num_batches_tracked` is ignored). For norm='instance' (no affine, no
    running statistics) 'batch_stats' is an empty dict.
    """
    _check_num_downs(num_downs)
    if norm not in ("batch", "instance"):
        raise ValueError(f"norm={norm!r} is not 'batch' or 'instance'")
    n = num_downs
    paths = _torch_level_paths(n, prefix)
    used = set()

    def get(key):
        if key not in state_dict:
            raise KeyError(f"pix2pix UnetGenerator state dict has no key {key!r} (num_downs={n}, norm={norm!r})")
        used.add(key)
        return np.asarray(state_dict[key], dtype=np.float32)

    first = get(f"{paths[0]}.0.weight")  # (ngf, input_nc, 4, 4)
    last = get(f"{paths[0]}.3.weight")  # (ngf * 2, output_nc, 4, 4)
    if first.ndim != 4 or last.ndim != 4:
        raise ValueError(
            f"{paths[0]}.0.weight has shape {first.shape} and {paths[0]}.3.weight {last.shape}; expected 4-d conv weights"
        )
    ngf, input_nc, output_nc = first.shape[0], first.shape[1], last.shape[1]
    model = UnetGenerator(output_nc=output_nc, num_downs=n, ngf=ngf, norm=norm)
    size = 2**n
    expected = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, input_nc)), train=False)
    )
    exp_params = expected["params"]
    exp_stats = expected.get("batch_stats", {})

    params, stats = {}, {}

    def put(tree, exp_tree, module, sub, leaf, key, value):
        want = exp_tree[module][sub][leaf].shape
        if tuple(value.shape) != tuple(want):
            raise ValueError(
                f"shape mismatch for {key!r}: got {tuple(np.shape(state_dict[key]))}, which maps to "
                f"{tuple(value.shape)} but {module}/{sub}/{leaf} needs {tuple(want)} "
                f"(num_downs={n}, ngf={ngf}, input_nc={input_nc}, output_nc={output_nc})"
            )
        tree.setdefault(module, {}).setdefault(sub, {})[leaf] = jnp.asarray(value)

    def conv(module, key):
        # Conv2d OIHW -> HWIO; ConvTranspose2d (in, out, kh, kw) -> (kh, kw, out, in): both (2, 3, 1, 0).
        w = get(key + ".weight")
        if w.ndim != 4:
            raise ValueError(f"shape mismatch for {key + '.weight'!r}: got {w.shape}, expected a 4-d weight")
        put(params, exp_params, module, "conv", "kernel", key + ".weight", w.transpose(2, 3, 1, 0))
        if "bias" in exp_params[module]["conv"]:
            put(params, exp_params, module, "conv", "bias", key + ".bias", get(key + ".bias"))

    def bn(module, key):
        if norm != "batch":
            return
        put(params, exp_params, module, "bn", "scale", key + ".weight", get(key + ".weight"))
        put(params, exp_params, module, "bn", "bias", key + ".bias", get(key + ".bias"))
        put(stats, exp_stats, module, "bn", "mean", key + ".running_mean", get(key + ".running_mean"))
        put(stats, exp_stats, module, "bn", "var", key + ".running_var", get(key + ".running_var"))

    for i in range(n):
        d, dn, u, un = _torch_level_indices(i, n)
        conv(f"down_{i}", f"{paths[i]}.{d}")
        if dn is not None:
            bn(f"down_norm_{i}", f"{paths[i]}.{dn}")
        conv(f"up_{i}", f"{paths[i]}.{u}")
        if un is not None:
            bn(f"up_norm_{i}", f"{paths[i]}.{un}")

    for key in state_dict:
        if key not in used and not key.endswith("num_batches_tracked"):
            raise ValueError(
                f"unexpected key {key!r} in the state dict for a pix2pix UnetGenerator(num_downs={n}, norm={norm!r})"
            )
    struct = jax.tree_util.tree_structure
    if struct(params) != struct(dict(exp_params)) or struct(stats) != struct(dict(exp_stats)):
        # Cannot happen while the level plan above matches UnetGenerator; a guard against edits.
        raise AssertionError("load_torch_unet's variables do not match UnetGenerator's tree")
    return {"params": params, "batch_stats": stats}
