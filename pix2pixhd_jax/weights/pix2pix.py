"""pix2pix's UnetGenerator state dicts (junyanz/pytorch-CycleGAN-and-pix2pix) -> Flax variables.

The reference nests UnetSkipConnectionBlocks recursively, so its keys are paths of Sequential
indices (`model.model.1.model.3.model.2.running_mean`); `load_torch_unet` walks them level by
level into models.unet_generator.UnetGenerator's per-level names.
"""

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.models.unet_generator import UnetGenerator, check_num_downs


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
    check_num_downs(num_downs)
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
