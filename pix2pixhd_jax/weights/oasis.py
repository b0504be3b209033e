"""PyTorch OASIS state dicts -> Flax variables (boschresearch/OASIS's checkpoints: `*_G.pth`,
`*_EMA.pth` (the generator's moving average, what its test.py synthesizes with) and `*_D.pth`).

The generator's keys: fc, body.{i}.{conv_0, conv_1, conv_s, norm_0, norm_1, norm_s}, conv_img,
with SPADE's parameter-free norm under `first_norm` (`pix2pixhd_jax.weights.spade` converts
them). The discriminator's: body_down.{i} and body_up.{i}, each with conv1 and conv2 (nn.Sequential
whose conv sits after the LeakyReLU and, going up, the Upsample: index 0 in the very first
block, 2 going up, 1 otherwise) and conv_s; layer_up_last.
"""

from typing import List

from pix2pixhd_jax.errors import InteropError
from pix2pixhd_jax.models.oasis_discriminator import OASISDiscriminator
from pix2pixhd_jax.models.spade_generator import SPADEGenerator
from pix2pixhd_jax.weights.spade import Layer, convert, expected_variables, generator_variables


def discriminator_plan(num_res_blocks: int) -> List[Layer]:
    plan = []
    for i in range(num_res_blocks):
        path = (f"down_{i}",)
        plan += [Layer(f"body_down.{i}.conv1.{0 if i == 0 else 1}", path + ("conv_0",), "conv"),
                 Layer(f"body_down.{i}.conv2.1", path + ("conv_1",), "conv"),
                 Layer(f"body_down.{i}.conv_s", path + ("conv_shortcut",), "conv")]
    for i in range(num_res_blocks):
        path = (f"up_{i}",)
        plan += [Layer(f"body_up.{i}.conv1.2", path + ("conv_0",), "conv"),
                 Layer(f"body_up.{i}.conv2.1", path + ("conv_1",), "conv"),
                 Layer(f"body_up.{i}.conv_s", path + ("conv_shortcut",), "conv")]
    plan.append(Layer("layer_up_last", ("conv_out",), "conv"))
    return plan


def oasis_generator_variables(state_dict, g: SPADEGenerator, label_channels: int, what: str = "netG"):
    """OASIS's generator (or its EMA) for `g` (arch 'oasis'); `label_channels` is OASIS's
    semantic_nc (label_nc + 1 for the don't-care label: 35 for Cityscapes, 151 for ADE20K)."""
    if g.arch != "oasis":
        raise InteropError(f"{what}: an OASIS checkpoint needs the generator arch 'oasis', not {g.arch!r}.")
    return generator_variables(state_dict, g, label_channels, what)


def oasis_discriminator_variables(state_dict, d: OASISDiscriminator, input_nc: int = 3, what: str = "netD"):
    """OASIS's discriminator for `d`, reading images of `input_nc` channels (OASIS's: 3)."""
    size = 2 ** d.num_res_blocks
    expected = expected_variables(d, (1, size, size, input_nc))
    return convert(state_dict, discriminator_plan(d.num_res_blocks), expected, what)
