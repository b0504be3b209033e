"""The pix2pixHD model as a whole (paper sec. 3): its networks built from a config, G's input,
and G (with E) applied for training or inference.

G's input (sec. 3.3) is the one-hot label map (or an RGB label image when label_nc == 0), the
instance boundary map when instance maps are used, and, with the feature encoder (sec. 3.4),
E's instance-pooled features of the photo. D sees the labels (and boundaries) and the image,
never the features. Training, synthesis, encoding, export and the benchmark all build their
programs from here; nothing here knows of training.

The successors build here too: netG=spade is SPADE's generator (OASIS's with model.z_dim > 0,
reading 3D noise beside the label map) and netD=oasis OASIS's segmentation discriminator, which
sees the image alone (models/spade_generator.py, models/oasis_discriminator.py).

The input helpers work on numpy and jax.numpy arrays alike (pass `xp`), so the input
pipeline builds them on the host and the programs on the device. Configs are read by
attribute (a config_loading.Config, or any object with the same attributes).
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.errors import ConfigError, UserError
from pix2pixhd_jax.models.discriminator import MultiscaleDiscriminator, PatchDiscriminator
from pix2pixhd_jax.models.encoder import FeatureEncoder
from pix2pixhd_jax.models.generator import GlobalGenerator, LocalEnhancer
from pix2pixhd_jax.models.layers import remat_policy
from pix2pixhd_jax.models.oasis_discriminator import OASISDiscriminator
from pix2pixhd_jax.models.pixels import from_levels
from pix2pixhd_jax.models.spade import PARAM_FREE_NORMS
from pix2pixhd_jax.models.spade_generator import (ARCHS, UPSAMPLING_LAYERS, SPADEGenerator, broadcast_noise,
                                                  num_upsamplings)
from pix2pixhd_jax.models.unet_generator import UnetGenerator

GENERATORS = ("global", "local", "unet_256", "unet_128", "spade")
DISCRIMINATORS = ("multiscale", "patch", "oasis")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
INFERENCE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# ----- G's input channels -----------------------------------------------------------------


def instance_boundaries(inst, xp=np):
    """Instance boundary map: 1 where a pixel's id differs from a 4-neighbour's.

    Both sides of every difference are marked, as in the reference's get_edges,
    so boundaries are about two pixels wide. `inst` is (..., H, W); the result has
    the same shape and dtype float32.
    """
    horizontal = inst[..., :, 1:] != inst[..., :, :-1]
    vertical = inst[..., 1:, :] != inst[..., :-1, :]
    pad = [(0, 0)] * (inst.ndim - 2)
    edge = xp.pad(horizontal, pad + [(0, 0), (1, 0)]) | xp.pad(horizontal, pad + [(0, 0), (0, 1)])
    edge = edge | xp.pad(vertical, pad + [(1, 0), (0, 0)]) | xp.pad(vertical, pad + [(0, 1), (0, 0)])
    return edge.astype(xp.float32)


def one_hot_labels(label, label_nc, xp=np):
    """(..., H, W) integer ids -> (..., H, W, label_nc) float32 one-hot."""
    return (label[..., None] == xp.arange(label_nc, dtype=label.dtype)).astype(xp.float32)


def size_divisor(model_cfg) -> int:
    """The factor every training and synthesis size must be a multiple of (with OASIS's D, which
    halves the image num_res_blocks times, at least 2 ** num_res_blocks)."""
    divisor = generator_divisor(model_cfg)
    if model_cfg.get("netD") == "oasis":
        divisor = max(divisor, 2 ** int(model_cfg.num_res_blocks))
    return divisor


def generator_divisor(model_cfg) -> int:
    net = model_cfg.netG
    if net == "spade":
        return 2 ** num_upsamplings(spade_arch(model_cfg), model_cfg.num_res_blocks, model_cfg.num_upsampling_layers)
    if net == "global":
        return 2 ** model_cfg.n_downsample_global
    if net == "local":
        return 2 ** (model_cfg.n_downsample_global + model_cfg.n_local_enhancers)
    if net.startswith("unet_"):
        # unet_256 halves eight times, unet_128 seven times.
        return {"unet_256": 256, "unet_128": 128}[net]
    raise UserError(f"model.netG={net!r} is not one of {', '.join(map(repr, GENERATORS))}")


def uses_encoder(config) -> bool:
    return bool(config.model.instance_feat or config.model.label_feat)


def label_channels(config) -> int:
    """The label part of G's input: one-hot ids, or the RGB label image when label_nc == 0."""
    data = config.data
    return (data.label_nc or data.input_nc) + (1 if data.use_instance else 0)


def generator_input_nc(config) -> int:
    """One-hot labels (+ boundary map) (+ the encoder's feat_num channels)."""
    return label_channels(config) + (config.model.feat_num if uses_encoder(config) else 0)


def discriminator_input_nc(config) -> int:
    """D sees labels (+ boundary map) and the image, never the feature map; OASIS's D the image alone."""
    if config.model.netD == "oasis":
        return config.data.output_nc
    return label_channels(config) + config.data.output_nc


def noise_channels(config) -> int:
    """The channels of noise G reads beside its label input: OASIS's 3D noise (model.z_dim) for
    netG=spade, else none."""
    return int(config.model.z_dim) if config.model.netG == "spade" else 0


def label_input(label, inst, config, xp=jnp):
    """G's and D's label part (paper sec. 3.3), built from what the data carries: label ids
    (..., H, W) of any integer dtype -> one-hot (label_nc channels), or, when label_nc == 0, an
    8-bit label image (..., H, W, input_nc) -> [-1, 1]; then the instance boundary map from the
    instance ids (..., H, W) when data.use_instance. float32 (..., H, W, label_channels).

    The one definition: the train step, synthesis, export and the editor all build their input
    with it, inside their programs (so only ids and 8-bit levels travel to the device)."""
    data = config.data
    if data.label_nc:
        parts = [one_hot_labels(label, int(data.label_nc), xp)]
    else:
        parts = [from_levels(label, 8, xp)]
    if data.use_instance:
        parts.append(instance_boundaries(inst, xp)[..., None])
    return xp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def model_inputs(batch, config, xp=jnp):
    """What the networks read, from a batch as the data carries it (`data/pipeline.py`: label ids
    or an 8-bit label image, instance ids, the photo in its integer levels):
    {'label': label_input(...), 'image': the photo in [-1, 1] float32 (when the batch has one),
    'label_ids' and 'inst': int32 ids (when the batch has them), for E's pooling}."""
    data = config.data
    ids = batch["label_ids"] if data.label_nc else batch["label"]
    inst = batch.get("inst")
    out = {"label": label_input(ids, inst, config, xp)}
    if "image" in batch:
        image = batch["image"]
        if not np.issubdtype(image.dtype, np.integer):
            raise ValueError(f"batch['image'] is {image.dtype}: the photo travels as its integer levels (uint8, "
                             "or uint16 for data.image_bit_depth=16) and is scaled here")
        out["image"] = from_levels(image, photo_bits(config), xp)
    if data.label_nc:
        out["label_ids"] = ids.astype(xp.int32)
    if inst is not None:
        out["inst"] = inst.astype(xp.int32)
    return out


def photo_bits(config) -> int:
    """The photos' bit depth (data.image_bit_depth)."""
    return int(config.data.image_bit_depth)


# ----- the networks -----------------------------------------------------------------------


def remat_mode(train_cfg) -> str:
    """train.remat, checked (layers.REMAT_MODES or a jax.checkpoint_policies name)."""
    try:
        return remat_policy(train_cfg.remat)
    except ValueError as e:
        raise ConfigError(f"{e}; see configs/default.py.") from None


def compute_dtype(train_cfg):
    if train_cfg.dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"train.dtype={train_cfg.dtype!r} is not one of {', '.join(map(repr, COMPUTE_DTYPES))}.")
    return COMPUTE_DTYPES[train_cfg.dtype]


def build_generator(config, dtype=jnp.float32, remat="none"):
    """G for config.model.netG. model.use_dropout is pix2pix's: the reference's define_G ignores it
    for the global and local generators, and so does this (with a warning), so its checkpoints
    and recipes keep their meaning."""
    m = config.model
    out = config.data.output_nc
    if m.netG in ("global", "local") and m.use_dropout:
        logging.getLogger(__name__).warning("model.use_dropout=true is ignored for netG=%s, as the reference "
                                            "ignores it: only pix2pix's U-Net (unet_256, unet_128) has dropout.",
                                            m.netG)
    if m.netG == "global":
        return GlobalGenerator(out, m.ngf, m.n_downsample_global, m.n_blocks_global, m.norm, False,
                               remat=remat, dtype=dtype)
    if m.netG == "local":
        return LocalEnhancer(out, m.ngf, m.n_downsample_global, m.n_blocks_global, m.n_local_enhancers,
                             m.n_blocks_local, m.norm, False, remat=remat, dtype=dtype)
    if m.netG in ("unet_256", "unet_128"):
        return UnetGenerator(output_nc=out, num_downs=8 if m.netG == "unet_256" else 7, ngf=m.ngf, norm=m.norm,
                             use_dropout=m.use_dropout, dtype=dtype)
    if m.netG == "spade":
        check_spade_config(m)
        return SPADEGenerator(out, m.ngf, spade_arch(m), int(m.num_res_blocks), m.num_upsampling_layers, int(m.z_dim),
                              bool(m.spectral_norm), m.param_free_norm, int(m.spade_kernel_size), int(m.spade_hidden),
                              dtype=dtype)
    raise UserError(f"model.netG={m.netG!r} is not one of {', '.join(map(repr, GENERATORS))}.")


def spade_arch(model_cfg) -> str:
    return model_cfg.get("spade_arch") or "oasis"


def check_spade_config(m):
    """The SPADE/OASIS settings, each checked against what the networks take."""
    checks = [(spade_arch(m) in ARCHS, f"model.spade_arch={spade_arch(m)!r} is not one of {ARCHS}"),
              (m.num_upsampling_layers in UPSAMPLING_LAYERS,
               f"model.num_upsampling_layers={m.num_upsampling_layers!r} is not one of {UPSAMPLING_LAYERS}"),
              (m.param_free_norm in PARAM_FREE_NORMS,
               f"model.param_free_norm={m.param_free_norm!r} is not one of {PARAM_FREE_NORMS}"),
              (2 <= int(m.num_res_blocks) <= 6, f"model.num_res_blocks={m.num_res_blocks} is not between 2 and 6"),
              (int(m.z_dim) >= 0, f"model.z_dim={m.z_dim} is negative"),
              (int(m.spade_kernel_size) % 2 == 1, f"model.spade_kernel_size={m.spade_kernel_size} is not odd")]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{message}; see configs/default.py.")


def build_discriminator(config, dtype=jnp.float32, remat="none"):
    m = config.model
    if m.netD == "multiscale":
        return MultiscaleDiscriminator(m.ndf, m.n_layers_D, m.num_D, m.norm, remat=remat, dtype=dtype)
    if m.netD == "patch":
        return PatchDiscriminator(m.ndf, m.n_layers_D, m.norm, remat=remat, dtype=dtype)
    if m.netD == "oasis":
        if not config.data.label_nc:
            raise ConfigError("model.netD=oasis segments the image into data.label_nc classes, but data.label_nc=0 "
                              "(RGB label images): set data.label_nc to the number of label ids.")
        check_spade_config(m)
        return OASISDiscriminator(int(config.data.label_nc), m.ndf, int(m.num_res_blocks), bool(m.spectral_norm),
                                  dtype=dtype)
    raise UserError(f"model.netD={m.netD!r} is not one of {', '.join(map(repr, DISCRIMINATORS))}.")


def build_encoder(config, dtype=jnp.float32, remat="none"):
    m = config.model
    norm = m.norm_E or m.norm
    return FeatureEncoder(m.feat_num, m.nef, m.n_downsample_E, norm, remat=remat, dtype=dtype)


class Networks:
    """G, D (and E) built from a config, in the config's compute dtype."""

    def __init__(self, config, dtype=None):
        if config.model.load_features:
            raise ConfigError(
                "model.load_features=true: the reference's recipe of precomputed instance feature maps "
                "(precompute_feature_maps.py, then training G on them without E) is not supported. Train the "
                "feature encoder with the model instead (model.instance_feat=true; `pix2pixhd-jax "
                "encode-features` makes the styles), or set model.load_features=false.")
        self.config = config
        dtype = compute_dtype(config.train) if dtype is None else dtype
        self.remat = remat_mode(config.train)
        self.G = build_generator(config, dtype, remat=self.remat)
        self.D = build_discriminator(config, dtype, remat=self.remat)
        self.E = build_encoder(config, dtype, remat=self.remat) if uses_encoder(config) else None
        self.g_in = generator_input_nc(config)
        self.d_in = discriminator_input_nc(config)
        self.z_dim = noise_channels(config)

    def init(self, rng, height: int, width: int):
        """Variables of G (+E) and D. Parameters do not depend on the image size."""
        k_g, k_d, k_e = jax.random.split(rng, 3)
        g_args = [jnp.zeros((1, height, width, self.g_in))]
        if self.z_dim:
            g_args.append(jnp.zeros((1, height, width, self.z_dim)))
        g_vars = self.G.init({"params": k_g, "dropout": k_g}, *g_args)
        d_vars = self.D.init(k_d, jnp.zeros((1, height, width, self.d_in)))
        g_params, g_stats = {"generator": g_vars["params"]}, {"generator": g_vars.get("batch_stats", {})}
        if self.E is not None:
            e_vars = self.E.init(k_e, jnp.zeros((1, height, width, self.config.data.output_nc)))
            g_params["encoder"], g_stats["encoder"] = e_vars["params"], e_vars.get("batch_stats", {})
        return g_params, g_stats, d_vars["params"], d_vars.get("batch_stats", {})


def cast_for_inference(variables, dtype):
    """Variables ({'params'[, 'batch_stats']}) with every conv's kernel and bias in `dtype`, cast
    once here instead of at every call; normalisation parameters and statistics stay float32."""
    def cast(path, leaf):
        in_conv = any(getattr(k, "key", None) == "conv" for k in path)
        return jnp.asarray(leaf, dtype if in_conv else jnp.float32)

    return jax.tree_util.tree_map_with_path(cast, variables)


def apply_variables(module, params, stats, *args, train, rngs=None):
    """module.apply that threads batch-norm statistics: (output, new stats)."""
    variables = {"params": params}
    if stats:
        variables["batch_stats"] = stats
        out, updated = module.apply(variables, *args, train=train, rngs=rngs, mutable=["batch_stats"])
        return out, updated["batch_stats"]
    return module.apply(variables, *args, train=train, rngs=rngs), stats


def apply_inference(module, variables, *args):
    """module(*args) in inference mode from {'params'[, 'batch_stats']} (what checkpoints hold)."""
    return apply_variables(module, variables["params"], variables.get("batch_stats", {}), *args, train=False)[0]


def generate(nets: Networks, g_params, g_stats, inputs, *, train: bool, rng, features=None):
    """G(s[, E(x)][, z]) -> (fake image in f32, new stats), from model_inputs' dict. `features`
    overrides E's output. A generator with 3D noise (netG=spade, z_dim > 0) reads inputs['noise']
    (N, H, W, z_dim), or, without one, OASIS's per-image noise drawn from `rng`."""
    config = nets.config
    label = inputs["label"]
    stats = dict(g_stats)
    noise = ()
    if nets.z_dim:
        z = inputs.get("noise")
        if z is None:
            n, h, w = label.shape[:3]
            z = broadcast_noise(jax.random.fold_in(rng, 1), n, h, w, nets.z_dim)
        noise = (z,)
    if nets.E is not None:
        if features is None:
            pool_ids = inputs["label_ids"] if config.model.label_feat else inputs["inst"]
            features, stats["encoder"] = apply_variables(nets.E, g_params["encoder"], g_stats["encoder"],
                                                         inputs["image"], pool_ids, train=train)
        label = jnp.concatenate([label, features.astype(label.dtype)], axis=-1)
    fake, stats["generator"] = apply_variables(nets.G, g_params["generator"], g_stats["generator"], label, *noise,
                                               train=train, rngs={"dropout": rng})
    return fake.astype(jnp.float32), stats
