"""PyTorch pix2pixHD state dicts -> Flax variables (NVIDIA's released checkpoints).

The reference stores its networks as nn.Sequential stacks, so its keys are
indices (`model.1.weight`, `model.10.conv_block.5.weight`, `model1_2.3.weight`,
`scale1_layer2.0.weight`). A *plan* lists, in the reference's construction order,
each layer's key prefix, its path in our modules and its kind; one converter
then moves every tensor (OIHW -> HWIO; transposed convs (in, out, kh, kw) ->
(kh, kw, out, in); batch norm weight/bias/running stats -> scale/bias/mean/var)
and checks it against the shapes our module expects.

torch is needed only to read .pth files (`pip install .[torch]`); the mapping
itself works on dicts of numpy arrays.
"""

import dataclasses
from typing import Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.errors import InteropError
from pix2pixhd_jax.models.pix2pixhd import (build_discriminator, build_encoder, build_generator,
                                           discriminator_input_nc, generator_input_nc)
from pix2pixhd_jax.weights.files import flatten, strip_module_prefix, torch_state_dict, unflatten


@dataclasses.dataclass(frozen=True)
class Layer:
    key: str  # torch prefix, e.g. 'model.4'
    path: Tuple[str, ...]  # our module path, e.g. ('down_0',)
    kind: str  # 'conv' | 'convT' | 'norm'


# ----- plans: the reference's Sequential indices ---------------------------------


def _resnet_block(key: str, path: Tuple[str, ...], use_dropout: bool) -> List[Layer]:
    # conv_block: pad, conv, norm, ReLU, [Dropout], pad, conv, norm
    second = 6 if use_dropout else 5
    return [
        Layer(f"{key}.conv_block.1", path + ("conv_0",), "conv"),
        Layer(f"{key}.conv_block.2", path + ("norm_0",), "norm"),
        Layer(f"{key}.conv_block.{second}", path + ("conv_1",), "conv"),
        Layer(f"{key}.conv_block.{second + 1}", path + ("norm_1",), "norm"),
    ]


def encoder_decoder_plan(prefix: str, n_down: int, n_blocks: int, use_dropout: bool = False,
                         with_output: bool = True, path: Tuple[str, ...] = ()) -> List[Layer]:
    """GlobalGenerator (and, with n_blocks=0, the Encoder): Sequential `prefix`."""
    plan = [Layer(f"{prefix}.1", path + ("conv_in",), "conv"), Layer(f"{prefix}.2", path + ("norm_in",), "norm")]
    i = 4
    for d in range(n_down):
        plan += [Layer(f"{prefix}.{i}", path + (f"down_{d}",), "conv"),
                 Layer(f"{prefix}.{i + 1}", path + (f"down_norm_{d}",), "norm")]
        i += 3
    for b in range(n_blocks):
        plan += _resnet_block(f"{prefix}.{i}", path + (f"res_{b}",), use_dropout)
        i += 1
    for u in range(n_down):
        plan += [Layer(f"{prefix}.{i}", path + (f"up_{u}",), "convT"),
                 Layer(f"{prefix}.{i + 1}", path + (f"up_norm_{u}",), "norm")]
        i += 3
    if with_output:
        plan.append(Layer(f"{prefix}.{i + 1}", path + ("conv_out",), "conv"))
    return plan


def local_enhancer_plan(n_down: int, n_blocks_global: int, n_local: int, n_blocks_local: int,
                        use_dropout: bool = False) -> List[Layer]:
    plan = encoder_decoder_plan("model", n_down, n_blocks_global, use_dropout, with_output=False,
                                path=("global_generator",))
    for n in range(1, n_local + 1):
        front, back, path = f"model{n}_1", f"model{n}_2", (f"enhancer_{n}",)
        plan += [Layer(f"{front}.1", path + ("conv_in",), "conv"), Layer(f"{front}.2", path + ("norm_in",), "norm"),
                 Layer(f"{front}.4", path + ("down",), "conv"), Layer(f"{front}.5", path + ("down_norm",), "norm")]
        for b in range(n_blocks_local):
            plan += _resnet_block(f"{back}.{b}", path + (f"res_{b}",), use_dropout)
        i = n_blocks_local
        plan += [Layer(f"{back}.{i}", path + ("up",), "convT"), Layer(f"{back}.{i + 1}", path + ("up_norm",), "norm")]
        if n == n_local:
            plan.append(Layer(f"{back}.{i + 4}", path + ("conv_out",), "conv"))
    return plan


def discriminator_plan(num_D: int, n_layers: int, intermediate: bool = True, flat_prefix: str = "layer{k}") -> List[Layer]:
    """MultiscaleDiscriminator: `scale{k}_layer{j}.{idx}` (feature matching on, the default)
    or `layer{k}.{idx}` (one Sequential per scale, --no_ganFeat_loss). pix2pix's single
    PatchGAN is the flat layout with prefix 'model'."""
    plan = []
    for k in range(num_D):
        path = (f"scale_{k}",)
        flat = flat_prefix.format(k=k)
        if intermediate:
            plan.append(Layer(f"scale{k}_layer0.0", path + ("layer_0",), "conv"))
            for j in range(1, n_layers + 1):
                plan += [Layer(f"scale{k}_layer{j}.0", path + (f"layer_{j}",), "conv"),
                         Layer(f"scale{k}_layer{j}.1", path + (f"norm_{j}",), "norm")]
            plan.append(Layer(f"scale{k}_layer{n_layers + 1}.0", path + (f"layer_{n_layers + 1}",), "conv"))
        else:
            plan.append(Layer(f"{flat}.0", path + ("layer_0",), "conv"))
            i = 2
            for j in range(1, n_layers + 1):
                plan += [Layer(f"{flat}.{i}", path + (f"layer_{j}",), "conv"),
                         Layer(f"{flat}.{i + 1}", path + (f"norm_{j}",), "norm")]
                i += 3
            plan.append(Layer(f"{flat}.{i}", path + (f"layer_{n_layers + 1}",), "conv"))
    return plan


# ----- conversion --------------------------------------------------------------------


def _to_torch_layout(shape):
    """Our shape written in the reference's layout, for error messages: HWIO -> OIHW,
    and (kh, kw, out, in) -> (in, out, kh, kw) alike."""
    return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else tuple(shape)


def _to_ours(array):
    """OIHW -> HWIO, and a transposed conv's (in, out, kh, kw) -> (kh, kw, out, in)."""
    array = np.asarray(array)
    return array.transpose(2, 3, 1, 0) if array.ndim == 4 else array


def convert(state_dict: Dict[str, np.ndarray], plan: List[Layer], expected, what: str):
    """Move the tensors of `state_dict` into variables shaped like `expected` (a flax
    variables pytree of ShapeDtypeStructs). Every key must be used, every variable filled."""
    sd = strip_module_prefix(state_dict)
    want = {("params",) + p: v for p, v in flatten(dict(expected.get("params", {}))).items()}
    want.update({("batch_stats",) + p: v for p, v in flatten(dict(expected.get("batch_stats", {}))).items()})
    got, used = {}, set()

    def put(target, key):
        if key not in sd:
            shape = _to_torch_layout(want[target].shape) if target in want else "?"
            raise InteropError(f"{what}: key {key!r} is missing from the state dict (expected shape {shape}); "
                               "the checkpoint does not fit this config (check netG, ngf, n_downsample_global, "
                               "n_blocks_*, num_D, n_layers_D, norm, and the input channels).")
        if target not in want:
            raise InteropError(f"{what}: key {key!r} has no counterpart in this config's model "
                               f"({'/'.join(target[1:])}); the checkpoint does not fit this config.")
        array = _to_ours(sd[key])
        if array.shape != tuple(want[target].shape):
            raise InteropError(
                f"{what}: key {key!r} has shape {tuple(np.shape(sd[key]))} but this config's model expects "
                f"{_to_torch_layout(want[target].shape)}; the checkpoint does not fit this config "
                "(check label_nc, use_instance, feat_num, ngf/ndf and the layer counts).")
        got[target] = array.astype(np.float32)
        used.add(key)

    for layer in plan:
        conv_path = layer.path + ("conv",)
        if layer.kind in ("conv", "convT"):
            put(("params",) + conv_path + ("kernel",), f"{layer.key}.weight")
            if ("params",) + conv_path + ("bias",) in want or f"{layer.key}.bias" in sd:
                put(("params",) + conv_path + ("bias",), f"{layer.key}.bias")
        else:
            bn = layer.path + ("bn",)
            if ("params",) + bn + ("scale",) in want:
                for ours, theirs, coll in (("scale", "weight", "params"), ("bias", "bias", "params"),
                                           ("mean", "running_mean", "batch_stats"),
                                           ("var", "running_var", "batch_stats")):
                    put((coll,) + bn + (ours,), f"{layer.key}.{theirs}")
                used.add(f"{layer.key}.num_batches_tracked")
            else:
                # Instance norm has no parameters; PyTorch <= 0.3 (NVIDIA's released
                # checkpoints) saved unused running stats for it, which mean nothing here.
                for extra in ("running_mean", "running_var", "num_batches_tracked"):
                    used.add(f"{layer.key}.{extra}")
    unexpected = [k for k in sd if k not in used]
    if unexpected:
        raise InteropError(f"{what}: unexpected key {unexpected[0]!r} with shape {tuple(np.shape(sd[unexpected[0]]))} "
                           f"({len(unexpected)} unexpected in all); the checkpoint does not fit this config.")
    missing = [p for p in want if p not in got]
    if missing:
        raise InteropError(f"{what}: no tensor for {'/'.join(missing[0])}; the checkpoint does not fit this config.")
    return jax.tree_util.tree_map(np.asarray, unflatten(got))


# ----- the three networks ----------------------------------------------------------------


def generator_plan(config) -> List[Layer]:
    m = config.model
    # The reference's define_G builds the global and local generators without dropout layers,
    # whatever --use_dropout says, so its state dicts have none.
    if m.netG == "global":
        return encoder_decoder_plan("model", m.n_downsample_global, m.n_blocks_global)
    if m.netG == "local":
        return local_enhancer_plan(m.n_downsample_global, m.n_blocks_global, m.n_local_enhancers,
                                   m.n_blocks_local)
    raise InteropError(f"model.netG={m.netG!r}: import of reference checkpoints covers 'global' and 'local'.")


def encoder_plan(config) -> List[Layer]:
    return encoder_decoder_plan("model", config.model.n_downsample_E, 0, path=("encoder_decoder",))


def _expected(module, *shapes):
    args = [jnp.zeros(s, jnp.int32 if len(s) == 3 else jnp.float32) for s in shapes]
    return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))


def generator_variables(state_dict, config):
    g = build_generator(config)
    return convert(state_dict, generator_plan(config), _expected(g, (1, 64, 64, generator_input_nc(config))), "netG")


def discriminator_variables(state_dict, config):
    d = build_discriminator(config)
    sd = strip_module_prefix(state_dict)
    if config.model.netD == "patch":  # pix2pix's NLayerDiscriminator: one Sequential 'model'
        plan = discriminator_plan(1, config.model.n_layers_D, intermediate=False, flat_prefix="model")
    else:
        intermediate = any(k.startswith("scale") for k in sd)
        plan = discriminator_plan(config.model.num_D, config.model.n_layers_D, intermediate)
    return convert(sd, plan, _expected(d, (1, 64, 64, discriminator_input_nc(config))), "netD")


def encoder_variables(state_dict, config):
    e = build_encoder(config)
    return convert(state_dict, encoder_plan(config), _expected(e, (1, 64, 64, config.data.output_nc)), "netE")


def load_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """A .pth state dict as numpy arrays (needs torch)."""
    return torch_state_dict(path, InteropError, "reading PyTorch checkpoints needs torch: pip install '.[torch]' "
                            "(or pip install torch).")
