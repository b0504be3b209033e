"""PyTorch SPADE and OASIS state dicts -> Flax variables: NVlabs/SPADE's SPADEGenerator, and the
layer mapping OASIS's generator and discriminator share (`pix2pixhd_jax.weights.oasis`).

Both references wrap their convs in torch.nn.utils.spectral_norm, whose state dict holds
`weight_orig` (the raw weight), `weight_u` and `weight_v` (the power iteration's vectors) and the
bias; they become kernel (OIHW -> HWIO) and bias in params and u, v in batch_stats, so the
imported model's first eval pass divides by the same sigma as the reference's. Without spectral
norm a conv has `weight`. SPADE's parameter-free batch norm has running_mean and running_var
(-> batch_stats mean, var) and num_batches_tracked (unused: the momentum is fixed).

A plan lists, per layer, the reference's key prefix, our module path and its kind ('conv' or
'norm'); the converter moves every tensor, checks every shape, and refuses unused keys and
unfilled variables, naming the first. torch is needed only to read .pth files.
"""

import dataclasses
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.errors import InteropError
from pix2pixhd_jax.models.spade_generator import SPADEGenerator, generator_blocks, input_width, num_upsamplings
from pix2pixhd_jax.weights.files import flatten, strip_module_prefix, torch_state_dict, unflatten


@dataclasses.dataclass(frozen=True)
class Layer:
    key: str  # the reference's prefix, e.g. 'head_0.conv_0'
    path: Tuple[str, ...]  # ours, e.g. ('block_0', 'conv_0')
    kind: str  # 'conv' (plain or spectrally normalised, as our model has it) | 'norm' (param-free)


def spade_norm_plan(key: str, path: Tuple[str, ...], norm_name: str) -> List[Layer]:
    """One SPADE: its parameter-free norm (`param_free_norm` in NVlabs/SPADE, `first_norm` in
    OASIS) and mlp_shared.0, mlp_gamma, mlp_beta."""
    return [Layer(f"{key}.{norm_name}", path + ("param_free_norm",), "norm"),
            Layer(f"{key}.mlp_shared.0", path + ("shared",), "conv"),
            Layer(f"{key}.mlp_gamma", path + ("gamma",), "conv"),
            Layer(f"{key}.mlp_beta", path + ("beta",), "conv")]


def spade_block_plan(key: str, path: Tuple[str, ...], norm_name: str, shortcut: bool) -> List[Layer]:
    plan = [Layer(f"{key}.conv_0", path + ("conv_0",), "conv"), Layer(f"{key}.conv_1", path + ("conv_1",), "conv")]
    plan += spade_norm_plan(f"{key}.norm_0", path + ("norm_0",), norm_name)
    plan += spade_norm_plan(f"{key}.norm_1", path + ("norm_1",), norm_name)
    if shortcut:
        plan.append(Layer(f"{key}.conv_s", path + ("conv_shortcut",), "conv"))
        plan += spade_norm_plan(f"{key}.norm_s", path + ("norm_shortcut",), norm_name)
    return plan


def generator_plan(g: SPADEGenerator) -> List[Layer]:
    """Either reference's generator: `fc`, the blocks (head_0 ... in NVlabs/SPADE, body.i in
    OASIS), `conv_img`."""
    norm_name = "param_free_norm" if g.arch == "spade" else "first_norm"
    blocks = generator_blocks(g.arch, g.ngf, g.num_res_blocks, g.num_upsampling_layers)
    width = input_width(g.arch, g.ngf, g.num_res_blocks)
    plan = [Layer("fc", ("conv_in",), "conv")]
    for i, (name, out, _) in enumerate(blocks):
        plan += spade_block_plan(name, (f"block_{i}",), norm_name, shortcut=width != out)
        width = out
    plan.append(Layer("conv_img", ("conv_out",), "conv"))
    return plan


def _to_ours(array):
    array = np.asarray(array)
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array


def _torch_shape(shape):
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)


def convert(state_dict: Dict[str, np.ndarray], plan: List[Layer], expected, what: str):
    """The tensors of `state_dict` as variables shaped like `expected` ({'params', 'batch_stats'}
    of ShapeDtypeStructs). Plan layers that our model lacks (a shortcut of equal widths) are
    skipped; every key of the state dict must be used and every variable filled."""
    sd = strip_module_prefix(state_dict)
    want = {}
    for coll in ("params", "batch_stats"):
        want.update({(coll,) + p: v for p, v in flatten(dict(expected.get(coll, {}))).items()})
    got, used = {}, set()

    def put(target, key, transpose=True):
        if key not in sd:
            raise InteropError(f"{what}: key {key!r} is missing from the state dict (expected shape "
                               f"{_torch_shape(want[target].shape)}); the checkpoint does not fit this config "
                               "(check the generator's arch, ngf, num_res_blocks or num_upsampling_layers, z_dim, "
                               "spectral_norm, param_free_norm and the label channels).")
        array = _to_ours(sd[key]) if transpose else np.asarray(sd[key])
        if array.shape != tuple(want[target].shape):
            raise InteropError(f"{what}: key {key!r} has shape {tuple(np.shape(sd[key]))} but this config's model "
                               f"expects {_torch_shape(want[target].shape)}; the checkpoint does not fit this config "
                               "(check label_nc, use_instance, z_dim, ngf/ndf and the block counts).")
        got[target] = array.astype(np.float32)
        used.add(key)

    for layer in plan:
        params, stats = ("params",) + layer.path, ("batch_stats",) + layer.path
        if layer.kind == "conv":
            if params + ("kernel",) not in want:
                continue
            if stats + ("u",) in want:
                put(params + ("kernel",), f"{layer.key}.weight_orig")
                put(stats + ("u",), f"{layer.key}.weight_u")
                put(stats + ("v",), f"{layer.key}.weight_v")
            else:
                put(params + ("kernel",), f"{layer.key}.weight")
            if params + ("bias",) in want:
                put(params + ("bias",), f"{layer.key}.bias")
        elif stats + ("mean",) in want:
            put(stats + ("mean",), f"{layer.key}.running_mean")
            put(stats + ("var",), f"{layer.key}.running_var")
            used.add(f"{layer.key}.num_batches_tracked")
    unexpected = [k for k in sd if k not in used]
    if unexpected:
        raise InteropError(f"{what}: unexpected key {unexpected[0]!r} with shape {tuple(np.shape(sd[unexpected[0]]))} "
                           f"({len(unexpected)} unexpected in all); the checkpoint does not fit this config (a "
                           "spectral-norm checkpoint has weight_orig, weight_u, weight_v; batch norm has running "
                           "statistics, instance norm none).")
    missing = [p for p in want if p not in got]
    if missing:
        raise InteropError(f"{what}: no tensor for {'/'.join(missing[0])}; the checkpoint does not fit this config.")
    return jax.tree_util.tree_map(np.asarray, unflatten(got))


def expected_variables(module, *shapes):
    """The variables' shapes `module.init` makes for inputs of these shapes (nothing computed)."""
    args = [jnp.zeros(s, jnp.float32) for s in shapes]
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))


def generator_inputs(g: SPADEGenerator, label_channels: int, height: int, width: int):
    shapes = [(1, height, width, label_channels)]
    if g.z_dim:
        shapes.append((1, height, width, g.z_dim))
    return shapes


def spade_generator_variables(state_dict, g: SPADEGenerator, label_channels: int, what: str = "netG"):
    """A state dict of NVlabs/SPADE's SPADEGenerator (`latest_net_G.pth`) for `g` (arch 'spade'),
    whose label input has `label_channels` channels (SPADE's semantic_nc: label_nc, + 1 with a
    don't-care label, + 1 with instance edges)."""
    if g.arch != "spade":
        raise InteropError(f"{what}: a SPADE checkpoint needs the generator arch 'spade', not {g.arch!r}.")
    return generator_variables(state_dict, g, label_channels, what)


def generator_variables(state_dict, g: SPADEGenerator, label_channels: int, what: str):
    """Either reference's generator state dict for `g`, checked against `g`'s variables."""
    size = 2 ** num_upsamplings(g.arch, g.num_res_blocks, g.num_upsampling_layers)
    expected = expected_variables(g, *generator_inputs(g, label_channels, size, size))
    return convert(state_dict, generator_plan(g), expected, what)


def load_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """A .pth state dict as numpy arrays (needs torch)."""
    return torch_state_dict(path, InteropError, "reading PyTorch checkpoints needs torch: pip install '.[torch]' "
                            "(or pip install torch).")
