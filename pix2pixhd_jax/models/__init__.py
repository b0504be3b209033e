"""models/: the networks, and the pix2pixHD model as a whole (`models.pix2pixhd`).

Lives here: the paper's networks (GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator,
FeatureEncoder with its instance-wise average pooling), pix2pix's U-Net and PatchGAN, the
VGG19 of the perceptual loss, the FID InceptionV3, the evaluation segmenter, the conv ops
under every layer (`conv`), and `pix2pixhd`: networks from a config, G's input, G (with E)
applied.

No file is read here: weight files are read in `pix2pixhd_jax.weights`.

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""

from pix2pixhd_jax.models.discriminator import MultiscaleDiscriminator, NLayerDiscriminator, PatchDiscriminator
from pix2pixhd_jax.models.encoder import FeatureEncoder, instance_average_pool
from pix2pixhd_jax.models.generator import GlobalGenerator, LocalEnhancer
from pix2pixhd_jax.models.pix2pixhd import (
    Networks, build_discriminator, build_encoder, build_generator, discriminator_input_nc, generator_input_nc,
    label_channels, uses_encoder)
from pix2pixhd_jax.models.unet_generator import UnetGenerator

__all__ = [
    "GlobalGenerator", "LocalEnhancer", "MultiscaleDiscriminator", "NLayerDiscriminator", "PatchDiscriminator",
    "FeatureEncoder", "UnetGenerator", "instance_average_pool", "Networks", "build_generator", "build_discriminator",
    "build_encoder", "label_channels", "generator_input_nc", "discriminator_input_nc", "uses_encoder",
]
