"""The reference's transforms keep label, instances and photo aligned in every mode."""

import types

import numpy as np
import pytest
from PIL import Image

from conftest import COLOURS, block_example
from pix2pixhd_jax.data import transforms
from pix2pixhd_jax.data.transforms import TransformParams
from pix2pixhd_jax.errors import DataError


def cfg(mode, load_size, fine_size, no_flip=False):
    return types.SimpleNamespace(resize_or_crop=mode, load_size=load_size, fine_size=fine_size, no_flip=no_flip)


def run(mode, load, fine, params, w=256, h=128, divisor=8, train=True):
    label, inst, photo = block_example(w, h, block=32)
    return transforms.transform_example(label, inst, Image.fromarray(photo), params, cfg(mode, load, fine),
                                        divisor, train, "example.png")


def assert_aligned(label, inst, photo):
    # NEAREST for both maps samples the same source pixels: exact agreement.
    np.testing.assert_array_equal(inst // 1000, label)
    # The bicubic photo matches the label's colour wherever the label is locally constant.
    m = 4  # bicubic support when downscaling, plus NEAREST's sub-pixel offset
    pad = np.pad(label, m, constant_values=-1)  # a crop border hides what lay beyond it
    interior = np.ones_like(label, bool)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            interior &= pad[m + dy: m + dy + label.shape[0], m + dx: m + dx + label.shape[1]] == label
    assert interior.mean() > 0.2  # enough pixels checked for the test to mean something
    colour = photo.astype(np.float32)
    err = np.abs(colour[interior] - COLOURS[label[interior]].astype(np.float32))
    assert err.max() < 2.0


@pytest.mark.parametrize("mode, load, fine, size", [
    ("resize_and_crop", 160, 96, (96, 96)),
    ("scale_width", 128, 0, (128, 64)),
    ("scale_width_and_crop", 192, 64, (64, 64)),
    ("crop", 0, 64, (64, 64)),
    ("none", 0, 0, (256, 128)),
])
@pytest.mark.parametrize("flip", [False, True])
def test_every_mode_keeps_maps_and_photo_aligned(mode, load, fine, size, flip):
    params = TransformParams(crop_x=16, crop_y=8, flip=flip)
    label, inst, photo = run(mode, load, fine, params)
    assert label.shape == size[::-1] and inst.shape == size[::-1] and photo.shape == size[::-1] + (3,)
    assert label.dtype == np.int32 and photo.dtype == np.uint8  # the photo's levels, as the batch carries them
    assert_aligned(label, inst, photo)


@pytest.mark.parametrize("mode, load, fine", [
    ("resize_and_crop", 160, 96), ("scale_width", 128, 0), ("scale_width_and_crop", 192, 64),
    ("crop", 0, 64), ("none", 0, 0)])
def test_flip_mirrors_all_three_together(mode, load, fine):
    plain = run(mode, load, fine, TransformParams(16, 8, False))
    flipped = run(mode, load, fine, TransformParams(16, 8, True))
    for a, b in zip(plain, flipped):
        np.testing.assert_array_equal(b, a[:, ::-1])


def test_flip_is_off_at_test_time_and_with_no_flip():
    params = TransformParams(0, 0, True)
    label, inst, photo = block_example(256, 128, block=32)
    for train, no_flip in ((False, False), (True, True)):
        out = transforms.transform_example(label, inst, Image.fromarray(photo), params,
                                           cfg("scale_width", 256, 0, no_flip), 8, train, "x")
        np.testing.assert_array_equal(out[0], label)


def test_crop_takes_the_window_at_the_crop_position_from_all_three():
    label, inst, photo = block_example(256, 128, block=32)
    out_label, out_inst, out_photo = transforms.transform_example(
        label, inst, Image.fromarray(photo), TransformParams(40, 24, False), cfg("crop", 0, 64), 8, True, "x")
    np.testing.assert_array_equal(out_label, label[24:88, 40:104])
    np.testing.assert_array_equal(out_inst, inst[24:88, 40:104])
    np.testing.assert_array_equal(out_photo, photo[24:88, 40:104])


def test_none_rounds_to_the_size_divisor_like_the_reference():
    assert transforms.output_size(100, 52, "none", 0, 0, 16) == (96, 48)
    assert transforms.output_size(2048, 1024, "none", 0, 0, 32) == (2048, 1024)
    label, inst, photo = block_example(100, 52, block=16)
    out = transforms.transform_example(label, inst, Image.fromarray(photo), TransformParams(0, 0, False),
                                       cfg("none", 0, 0), 16, True, "x")
    assert out[2].shape == (48, 96, 3)
    np.testing.assert_array_equal(out[1] // 1000, out[0])


def test_scale_width_keeps_aspect_like_the_reference():
    assert transforms.output_size(2048, 1024, "scale_width", 1024, 512, 16) == (1024, 512)
    assert transforms.output_size(1000, 333, "scale_width", 500, 512, 16) == (500, int(500 * 333 / 1000))
    assert transforms.output_size(2048, 1024, "scale_width_and_crop", 1024, 512, 16) == (512, 512)


def test_params_cover_the_whole_crop_range_and_depend_only_on_the_rng():
    xs, ys, flips = set(), set(), set()
    for s in range(4000):
        p = transforms.get_params(np.random.default_rng(s), 256, 128, "crop", 0, 64)
        xs.add(p.crop_x), ys.add(p.crop_y), flips.add(p.flip)
    assert min(xs) == 0 and max(xs) == 192 and min(ys) == 0 and max(ys) == 64 and flips == {True, False}
    a = transforms.get_params(np.random.default_rng([1, 2, 3]), 256, 128, "crop", 0, 64)
    b = transforms.get_params(np.random.default_rng([1, 2, 3]), 256, 128, "crop", 0, 64)
    assert a == b


def test_size_not_divisible_is_a_clear_error():
    with pytest.raises(DataError, match=r"example.png.*120x60.*not divisible by 8.*resize_or_crop=none"):
        run("scale_width", 120, 0, TransformParams(0, 0, False))


def test_crop_larger_than_the_scaled_image_is_a_clear_error():
    with pytest.raises(DataError, match=r"smaller than the 96x96 crop.*fine_size"):
        run("scale_width_and_crop", 128, 96, TransformParams(0, 0, False))


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(DataError, match="resize_or_crop='stretch'"):
        transforms.check_mode("stretch")


def test_inference_mode_keeps_the_scale_and_drops_the_random_crop():
    from pix2pixhd_jax.data.transforms import inference_mode, output_size

    for mode, load, fine, size in (("scale_width_and_crop", 256, 128, (512, 256)), ("resize_and_crop", 286, 256, (300, 200)),
                                   ("crop", 0, 128, (256, 128)), ("scale_width", 256, 256, (512, 256)), ("none", 0, 0, (96, 64))):
        new_mode, new_load, new_fine = inference_mode(mode, load, fine)
        assert "crop" not in new_mode or new_fine == new_load
        w, h = output_size(*size, new_mode, new_load, new_fine, 32)
        if "scale_width" in mode:
            assert (w, h) == (load, load * size[1] // size[0])  # the training scale, whole image
        elif mode == "resize_and_crop":
            assert (w, h) == (load, load)
        else:
            assert (w, h) == size  # the whole image at its own size


def test_inference_config_copies_the_workdir_config():
    """A config as read_config gives it: the copy changes, the original and what it writes back
    as JSON stay consistent."""
    from pix2pixhd_jax.checkpoint import config_dict
    from pix2pixhd_jax.config_loading import as_config

    saved = as_config({"data": {"resize_or_crop": "scale_width_and_crop", "load_size": 256, "fine_size": 128}})
    whole = transforms.inference_config(saved)
    assert saved.data.resize_or_crop == "scale_width_and_crop"
    assert whole.data.resize_or_crop == whole.data["resize_or_crop"] != "scale_width_and_crop"
    assert config_dict(whole)["data"]["resize_or_crop"] == whole.data.resize_or_crop
