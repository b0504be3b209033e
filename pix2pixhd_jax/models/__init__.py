"""Networks built from a config: generator, discriminator, feature encoder, VGG19.

Only flax/jax here: no TensorFlow, no ml_collections (configs are read by attribute).
"""

from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.models.discriminator import MultiscaleDiscriminator, NLayerDiscriminator, PatchDiscriminator
from pix2pixhd_jax.models.encoder import FeatureEncoder, instance_average_pool
from pix2pixhd_jax.models.generator import GlobalGenerator, LocalEnhancer

__all__ = [
    "GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator", "NLayerDiscriminator", "PatchDiscriminator",
    "FeatureEncoder", "instance_average_pool", "build_generator", "build_discriminator", "build_encoder",
    "label_channels", "generator_input_nc", "discriminator_input_nc", "uses_encoder",
]


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
    """D sees labels (+ boundary map) and the image, never the feature map."""
    return label_channels(config) + config.data.output_nc


def build_generator(config, dtype=None, remat=False):
    import jax.numpy as jnp

    m, dtype = config.model, dtype or jnp.float32
    out = config.data.output_nc
    if m.netG == "global":
        return GlobalGenerator(out, m.ngf, m.n_downsample_global, m.n_blocks_global, m.norm, m.use_dropout,
                               remat=remat, dtype=dtype)
    if m.netG == "local":
        return LocalEnhancer(out, m.ngf, m.n_downsample_global, m.n_blocks_global, m.n_local_enhancers,
                             m.n_blocks_local, m.norm, m.use_dropout, remat=remat, dtype=dtype)
    if m.netG in ("unet_256", "unet_128"):
        from pix2pixhd_jax.models.unet import UnetGenerator

        return UnetGenerator(output_nc=out, num_downs=8 if m.netG == "unet_256" else 7, ngf=m.ngf, norm=m.norm,
                             use_dropout=m.use_dropout, dtype=dtype)
    raise UserError(f"model.netG={m.netG!r} is not one of 'global', 'local', 'unet_256', 'unet_128'.")


def build_discriminator(config, dtype=None):
    import jax.numpy as jnp

    m, dtype = config.model, dtype or jnp.float32
    if m.netD == "multiscale":
        return MultiscaleDiscriminator(m.ndf, m.n_layers_D, m.num_D, m.norm, dtype=dtype)
    if m.netD == "patch":
        return PatchDiscriminator(m.ndf, m.n_layers_D, m.norm, dtype=dtype)
    raise UserError(f"model.netD={m.netD!r} is not 'multiscale' or 'patch'.")


def build_encoder(config, dtype=None):
    import jax.numpy as jnp

    m = config.model
    norm = m.get("norm_E") or m.norm  # workdirs from before norm_E have no such key
    return FeatureEncoder(m.feat_num, m.nef, m.n_downsample_E, norm, dtype=dtype or jnp.float32)
