"""`pix2pixhd-jax import-torch`: a PyTorch checkpoint's networks -> Flax variables, by the config's
networks: NVIDIA pix2pixHD's G, D and E (`reference`), NVlabs/SPADE's generator (`spade`: netG
spade, spade_arch spade) and boschresearch/OASIS's generator or its moving average and its
discriminator (`oasis`: spade_arch oasis, netD oasis)."""

from typing import Dict, Optional

from pix2pixhd_jax.errors import InteropError
from pix2pixhd_jax.models.pix2pixhd import build_discriminator, build_generator, label_channels, uses_encoder
from pix2pixhd_jax.weights import oasis, reference, spade


def generator_variables(state_dict, config) -> dict:
    if config.model.netG != "spade":
        return reference.generator_variables(state_dict, config)
    g, channels = build_generator(config), label_channels(config)
    if g.arch == "oasis":
        return oasis.oasis_generator_variables(state_dict, g, channels)
    return spade.spade_generator_variables(state_dict, g, channels)


def discriminator_variables(state_dict, config) -> dict:
    if config.model.netD == "oasis":
        return oasis.oasis_discriminator_variables(state_dict, build_discriminator(config), config.data.output_nc)
    if config.model.netG == "spade":
        raise InteropError("--netD: importing SPADE's discriminator is not supported; import its generator alone "
                           "(--netG), or an OASIS discriminator with model.netD=oasis.")
    return reference.discriminator_variables(state_dict, config)


def import_networks(config, netG: str, netD: Optional[str] = None, netE: Optional[str] = None) -> Dict[str, dict]:
    """{'generator', 'discriminator'?, 'encoder'?: variables} from the named .pth files."""
    if netE and not uses_encoder(config):
        raise InteropError("--netE given but the config has no feature encoder: add "
                           "--config.model.instance_feat=true (or label_feat).")
    converters = (("generator", netG, generator_variables), ("discriminator", netD, discriminator_variables),
                  ("encoder", netE, reference.encoder_variables))
    return {name: convert(reference.load_torch_state_dict(path), config)
            for name, path, convert in converters if path}
