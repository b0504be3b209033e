"""What the reference does around its networks, done the same way: test-time scaling, uint8
pictures, options it ignores or refuses, batch-norm inference, the fixed stage.

The scaling and picture tests read the real Cityscapes samples (2048x1024) and hold this
project against PIL doing the reference's own operations (base_dataset.py's __scale_width and
__make_power_2, util.tensor2im).
"""

import logging

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.models.pixels import to_uint8
from pix2pixhd_jax.errors import ConfigError
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.pix2pixhd import Networks, build_generator, label_input
from pix2pixhd_jax.weights.filled import random_variables

TINY_G = ["--config.model.ngf=8", "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
          "--config.model.ndf=4", "--config.model.num_D=1", "--config.model.n_layers_D=1"]


def synthesizer(config_file, *overrides):
    config = load_config(str(ROOT / "configs" / config_file), TINY_G + list(overrides))
    return Synthesizer(config, random_variables(Networks(config)))


def samples(root, n=6):
    labels = sorted((root / "train_label").glob("*.png"))[:n]
    insts = sorted((root / "train_inst").glob("*.png"))[:n]
    photos = sorted((root / "train_img").glob("*.png"))[:n]
    return list(zip(labels, insts, photos))


def test_inputs_are_scaled_as_the_references_test_transform_scales_them(cityscapes_samples):
    synth = synthesizer("cityscapes_1024x512.py")  # scale_width to 1024, as train_512p / test_512p
    assert synth.maps.test_size(2048, 1024) == (1024, 512)
    for label_file, inst_file, photo_file in samples(cityscapes_samples):
        label, inst = np.asarray(Image.open(label_file)), np.asarray(Image.open(inst_file)).astype(np.int32)
        photo = np.asarray(Image.open(photo_file).convert("RGB"))
        got_label, got_inst, got_photo = synth.maps.prepare(label, inst, photo)
        # The reference: PIL images in their own modes, __scale_width (NEAREST for label maps,
        # BICUBIC for photos): target width 1024, height int(1024 * 1024 / 2048).
        np.testing.assert_array_equal(got_label, np.asarray(Image.open(label_file).resize((1024, 512), Image.NEAREST)))
        np.testing.assert_array_equal(got_inst, np.asarray(Image.open(inst_file).resize((1024, 512), Image.NEAREST)))
        want_photo = np.asarray(Image.open(photo_file).convert("RGB").resize((1024, 512), Image.BICUBIC))
        np.testing.assert_array_equal(got_photo, want_photo)
    # resize_or_crop=none (the 1024p stage): the size rounded to the generator's factor by a resize.
    synth = synthesizer("cityscapes_2048x1024.py")
    label_file = samples(cityscapes_samples, 1)[0][0]
    cut = np.asarray(Image.open(label_file))[:1000, :2040]  # 2040x1000: to 2048x992 (factor 16)
    got, _, _ = synth.maps.prepare(cut)
    base = synth.maps.divisor
    want_size = (int(round(2040 / base) * base), int(round(1000 / base) * base))
    assert got.shape[::-1] == want_size
    np.testing.assert_array_equal(got, np.asarray(Image.fromarray(cut).resize(want_size, Image.NEAREST)))


def test_pictures_are_the_references_tensor2im_of_the_same_float_output(cityscapes_samples):
    rng = np.random.default_rng(0)
    floats = [rng.uniform(-1.2, 1.2, (64, 128, 3)).astype(np.float32), np.linspace(-1, 1, 4096, dtype=np.float32)]
    synth = synthesizer("cityscapes_1024x512.py")
    for label_file, inst_file, _ in samples(cityscapes_samples, 2):
        label, inst, _ = synth.maps.prepare(np.asarray(Image.open(label_file)),
                                       np.asarray(Image.open(inst_file)).astype(np.int32))
        floats.append(np.asarray(synth.nets.G.apply(synth.g_vars, synth_input(synth, label, inst)))[0])
    for fake in floats:
        reference = np.clip((fake + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)  # util.tensor2im
        np.testing.assert_array_equal(to_uint8(fake), reference)
    # Rounding would have written about half of the pixels one level higher.
    assert (np.floor((floats[2] + 1) * 127.5 + 0.5) != to_uint8(floats[2])).mean() > 0.3


def synth_input(synth, label, inst):
    return label_input(label[None], inst[None], synth.config, xp=np)


def test_synthesize_on_raw_cityscapes_maps_writes_the_references_pngs(cityscapes_samples, tmp_path):
    """NVIDIA's checkpoint path with the 512p config: a reference-layout G imported with
    import-torch, then `synthesize` on raw 2048x1024 maps, against the reference's test.py done
    by hand (PIL scaling, one-hot + get_edges, the torch G, tensor2im)."""
    torch = pytest.importorskip("torch", reason="the reference's networks need torch")
    import torch_reference as ref
    from pix2pixhd_jax.cli import main

    g = ref.randomize(ref.GlobalGenerator(35 + 1, 3, 8, 2, 1), seed=4).eval()
    torch.save(g.state_dict(), tmp_path / "latest_net_G.pth")
    workdir = tmp_path / "work"
    assert main(["import-torch", "--config", str(ROOT / "configs" / "cityscapes_1024x512.py"), *TINY_G,
                 "--netG", str(tmp_path / "latest_net_G.pth"), "--workdir", str(workdir)]) == 0
    picked = samples(cityscapes_samples, 2)
    for kind, index in (("label", 0), ("inst", 1)):
        (tmp_path / kind).mkdir()
        for files in picked:
            (tmp_path / kind / files[index].name).symlink_to(files[index])
    out = tmp_path / "out"
    assert main(["synthesize", "--workdir", str(workdir), "--label", str(tmp_path / "label"), "--inst",
                 str(tmp_path / "inst"), "--out", str(out), "--quiet"]) == 0
    differing = []
    for label_file, inst_file, _ in picked:
        name = label_file.name.replace("_gtFine_labelIds.png", "")
        got = np.asarray(Image.open(out / f"{name}_synthesized.png"))
        assert got.shape == (512, 1024, 3)
        label = torch.from_numpy(np.asarray(Image.open(label_file).resize((1024, 512), Image.NEAREST), np.int64))
        inst = torch.from_numpy(np.asarray(Image.open(inst_file).resize((1024, 512), Image.NEAREST), np.int64))
        one_hot = torch.zeros(1, 35, 512, 1024).scatter_(1, label[None, None], 1.0)
        edge = ref.get_edges(inst[None, None])
        with torch.no_grad():
            fake = g(torch.cat([one_hot, edge], 1))[0].numpy().transpose(1, 2, 0)
        want = ref.tensor2im(fake)
        diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
        assert diff.max() <= 1, diff.max()  # float rounding can tip a value over a level
        differing.append((diff > 0).mean())
    assert max(differing) < 1e-3, differing


def test_use_dropout_is_ignored_for_the_global_and_local_generators_as_the_reference(caplog):
    with caplog.at_level(logging.WARNING):
        g = build_generator(load_config(str(ROOT / "configs" / "default.py"), ["--config.model.use_dropout=true"]))
    assert g.use_dropout is False and "model.use_dropout=true is ignored for netG=global" in caplog.text
    unet = build_generator(load_config(str(ROOT / "configs" / "pix2pix_baseline.py"),
                                       ["--config.model.use_dropout=true"]))
    assert unet.use_dropout is True


def test_a_reference_checkpoint_trained_with_use_dropout_imports():
    torch = pytest.importorskip("torch", reason="the reference's networks need torch")
    import torch_reference as ref
    from pix2pixhd_jax.weights import reference

    # The reference's define_G builds no dropout layers whatever --use_dropout says.
    g = ref.randomize(ref.GlobalGenerator(36, 3, 8, 2, 1), seed=1)
    config = load_config(str(ROOT / "configs" / "default.py"), TINY_G + ["--config.model.use_dropout=true"])
    variables = reference.generator_variables(ref.state_dict_numpy(g), config)
    assert "res_0" in variables["params"]
    del torch


def test_load_features_is_refused_with_the_alternative():
    config = load_config(str(ROOT / "configs" / "default.py"), ["--config.model.load_features=true"])
    with pytest.raises(ConfigError, match=r"model.load_features=true.*model.instance_feat=true"):
        Networks(config)


def test_batch_norm_inference_uses_each_images_own_statistics():
    """With norm=batch, G outside training normalises each image with its own statistics (the
    reference's test: train mode, one image): an image's photo does not depend on its batch."""
    import jax.numpy as jnp

    config = load_config(str(ROOT / "configs" / "default.py"), TINY_G + ["--config.model.norm=batch"])
    nets = Networks(config)
    variables = random_variables(nets)["generator"]
    x = np.random.default_rng(0).normal(size=(3, 32, 32, nets.g_in)).astype(np.float32)
    together = np.asarray(nets.G.apply(variables, jnp.asarray(x)))
    alone = np.asarray(nets.G.apply(variables, jnp.asarray(x[1:2])))
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)
    # The running statistics (all 0 mean / 1 var here) give another picture.
    running = np.asarray(nets.G.clone(bn_inference="running").apply(variables, jnp.asarray(x[1:2])))
    assert np.abs(running - alone).max() > 1e-2
