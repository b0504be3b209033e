"""Bad input gets an error naming the file, the value and the fix, never a wrong batch."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import block_example, load_test_config, make_aligned, save
from pix2pixhd_jax.data import decode
from pix2pixhd_jax.errors import DataError


def png_bytes(array, mode=None, tmp=None):
    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def rec(label, photo, inst=b""):
    return {"label": label, "inst": inst, "image": photo,
            "label_file": "L.png", "inst_file": "I.png", "image_file": "P.png"}


def pipeline(tmp_path, *overrides):
    from pix2pixhd_jax.data.pipeline import InputPipeline
    cfg = load_test_config(f"data.dataroot={tmp_path}", "data.load_size=128", "train.batch_size=2", *overrides)
    return InputPipeline(cfg, "train")


def test_label_id_out_of_range_names_file_value_and_fix(tmp_path):
    made = make_aligned(tmp_path, n=4)
    label = made[2][1].copy()
    label[5, 5] = 40
    save(f"{tmp_path}/train_label/scene_002.png", label)
    with pytest.raises(DataError, match=r"scene_002.png: label id 40 is out of range for label_nc=35.*"
                                        r"--config.data.label_nc=41"):
        for _ in pipeline(tmp_path).iterate(0, num_epochs=1):
            pass


def test_label_255_gets_the_ignore_hint():
    label, _, photo = block_example(32, 16)
    label[0, 0] = 255
    with pytest.raises(DataError, match=r"255 is often an 'ignore' id"):
        decode.decode_example(rec(png_bytes(label), png_bytes(photo)), 35, False)


def test_label_and_photo_of_different_sizes(tmp_path):
    label, _, photo = block_example(64, 32)
    with pytest.raises(DataError, match=r"L.png is 64x32 but its photo P.png is 32x32.*same size"):
        decode.decode_example(rec(png_bytes(label), png_bytes(photo[:, :32].copy())), 35, False)


def test_instance_map_of_a_different_size():
    label, inst, photo = block_example(64, 32)
    with pytest.raises(DataError, match=r"I.png is 64x16 but its label map L.png is 64x32"):
        decode.decode_example(rec(png_bytes(label), png_bytes(photo), png_bytes(inst[:16].copy())), 35, True)


def test_missing_instance_map_while_instances_are_on():
    label, _, photo = block_example(64, 32)
    with pytest.raises(DataError, match=r"no instance map.*use_instance=False"):
        decode.decode_example(rec(png_bytes(label), png_bytes(photo)), 35, True)


def test_truncated_and_non_image_files(tmp_path):
    make_aligned(tmp_path, n=2)
    data = open(f"{tmp_path}/train_img/scene_001.png", "rb").read()
    open(f"{tmp_path}/train_img/scene_001.png", "wb").write(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"scene_001.png: cannot decode the image.*truncated"):
        for _ in pipeline(tmp_path).iterate(0, num_epochs=1):
            pass
    with pytest.raises(DataError, match=r"P.png: cannot decode"):
        decode.decode_photo(b"this is not a png", "P.png")
    with pytest.raises(DataError, match=r"P.png: the file is empty"):
        decode.decode_photo(b"", "P.png")


def test_8bit_instance_map_is_accepted_with_a_warning(caplog):
    label, inst, photo = block_example(64, 32)
    small = (inst % 200).astype(np.uint8)
    decode._warned.clear()
    with caplog.at_level(logging.WARNING):
        _, out, _ = decode.decode_example(rec(png_bytes(label), png_bytes(photo), png_bytes(small)), 35, True)
    np.testing.assert_array_equal(out, small)
    assert "8-bit instance map" in caplog.text


def test_16bit_instance_ids_survive_decoding():
    label, inst, photo = block_example(64, 32)
    assert inst.max() > 255
    _, out, _ = decode.decode_example(rec(png_bytes(label), png_bytes(photo), png_bytes(inst)), 35, True)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, inst)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P"])
def test_grayscale_rgba_and_palette_photos_are_converted_to_rgb(mode):
    label, _, photo = block_example(64, 32)
    img = Image.fromarray(photo)
    img = img.convert("RGBA") if mode == "RGBA" else img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    _, _, out = decode.decode_example(rec(png_bytes(label), buf.getvalue()), 35, False)
    assert out.mode == "RGB" and out.size == (64, 32)
    if mode == "L":
        np.testing.assert_allclose(np.asarray(out)[..., 0], np.asarray(Image.fromarray(photo).convert("L")), atol=1)


def test_photos_whose_bit_depth_or_channels_disagree_with_the_config_stop():
    label, _, photo = block_example(64, 32)
    sixteen = png_bytes((np.asarray(Image.fromarray(photo).convert("L")).astype(np.uint16) * 257))
    with pytest.raises(DataError, match=r"P.png: a 16-bit photo \(mode I;16\), but data.image_bit_depth=8.*"
                                        r"--config.data.image_bit_depth=16 --config.data.output_nc=1"):
        decode.decode_photo(sixteen, "P.png")
    gray8 = png_bytes(np.asarray(Image.fromarray(photo).convert("L")))
    with pytest.raises(DataError, match=r"P.png: an 8-bit photo \(mode L\), but data.image_bit_depth=16.*"
                                        r"not rescaled silently"):
        decode.decode_photo(gray8, "P.png", channels=1, bit_depth=16)
    with pytest.raises(DataError, match=r"P.png: a colour photo \(mode RGB\), but data.output_nc=1.*"
                                        r"--config.data.output_nc=3"):
        decode.decode_photo(png_bytes(photo), "P.png", channels=1, bit_depth=8)
    assert decode.decode_photo(gray8, "P.png", channels=1).mode == "L"
    out = decode.decode_photo(sixteen, "P.png", channels=1, bit_depth=16)
    assert out.mode == "F" and float(np.asarray(out).max()) > 255


def test_colour_label_map_is_rejected_but_gray_as_rgb_is_read():
    label, _, photo = block_example(64, 32)
    with pytest.raises(DataError, match=r"L.png: the label map is a colour \(RGB\) image.*label_nc=0"):
        decode.decode_example(rec(png_bytes(photo), png_bytes(photo)), 35, False)
    gray_rgb = np.repeat(label[..., None], 3, axis=-1)
    out, _, _ = decode.decode_example(rec(png_bytes(gray_rgb), png_bytes(photo)), 35, False)
    np.testing.assert_array_equal(out, label)


def test_batch_of_mixed_sizes_is_a_clear_error(tmp_path):
    make_aligned(tmp_path, n=4)
    label, inst, photo = block_example(128, 128, seed=9)
    for folder, arr in (("label", label), ("inst", inst), ("img", photo)):
        save(f"{tmp_path}/train_{folder}/scene_003.png", arr)
    with pytest.raises(DataError, match=r"scene_003.png: becomes 128x128.*became 128x64.*aspect ratio"):
        for _ in pipeline(tmp_path, "seed=3").iterate(0, num_epochs=1):
            pass


def test_batch_larger_than_the_dataset(tmp_path):
    make_aligned(tmp_path, n=2)
    with pytest.raises(DataError, match=r"2 examples, fewer than one batch of 4"):
        pipeline(tmp_path, "train.batch_size=4")
