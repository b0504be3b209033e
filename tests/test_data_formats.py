"""The data people bring: one-channel and 16-bit photos end to end, ADE20K's tree, instance maps
made from label maps, out-of-range label ids. All on small data made here."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, block_example, load_test_config, make_model_workdir, save
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data import decode, instances, label_maps, readers
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.errors import DataError
from pix2pixhd_jax.inference import export
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.pix2pixhd import Networks, model_inputs
from pix2pixhd_jax.models.vgg19 import VGG19Features
from pix2pixhd_jax.training.benchmark import fill_like
from pix2pixhd_jax.training.step import make_train_step
from step_helpers import fast_state

W, H = 64, 32
ONE_CHANNEL_16 = ("data.output_nc=1", "data.image_bit_depth=16", f"data.load_size={W}", "train.batch_size=2")
TINY = ("model.ngf=4", "model.ndf=4", "model.n_downsample_global=2", "model.n_blocks_global=1", "model.num_D=1",
        "model.n_layers_D=1")


def depth_like(label, seed):
    """A 16-bit one-channel 'depth' image whose levels depend on the label (learnable), full range."""
    levels = (np.random.default_rng(seed).permutation(256)[label] * 256 + label).astype(np.uint16)
    levels[0, 0] = 65535  # the top level is used
    return levels


@pytest.fixture(scope="module")
def depth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    made = {}
    for phase, n in (("train", 4), ("test", 2)):
        for i in range(n):
            label, inst, _ = block_example(W, H, block=8, seed=10 * i + (phase == "test"))
            photo = depth_like(label, i)
            save(f"{root}/{phase}_label/s{i}.png", label)
            save(f"{root}/{phase}_inst/s{i}.png", inst)
            save(f"{root}/{phase}_img/s{i}.png", photo)
            made[(phase, f"s{i}")] = (label, inst, photo)
    return root, made


def test_16_bit_one_channel_photos_keep_their_16_bits_through_the_pipeline(depth_data):
    root, made = depth_data
    config = load_test_config(f"data.dataroot={root}", *ONE_CHANNEL_16, "data.no_flip=True")
    batch = next(InputPipeline(config, "train").iterate(0))
    assert batch["image"].shape == (2, H, W, 1) and batch["image"].dtype == np.uint16
    photos = model_inputs(batch, config, xp=np)["image"]
    for i, name in enumerate(batch["name"]):
        photo = made[("train", name.decode())][2]
        np.testing.assert_array_equal(batch["image"][i, ..., 0], photo)
        np.testing.assert_allclose(photos[i, ..., 0], photo / 32767.5 - 1.0, atol=1e-6)
    # 8-bit rounding would have merged levels 256 apart; here neighbouring levels stay apart.
    assert len(np.unique(photos)) > 40


def test_the_config_and_the_photos_must_agree(depth_data, tmp_path):
    root, _ = depth_data
    config = load_test_config(f"data.dataroot={root}", f"data.load_size={W}", "train.batch_size=2")
    with pytest.raises(DataError, match=r"s\d.png: a 16-bit photo .*data.image_bit_depth=8"):
        InputPipeline(config, "train")
    made = tmp_path / "rgb"
    for i in range(2):
        label, inst, photo = block_example(W, H, seed=i)
        save(f"{made}/train_label/s{i}.png", label)
        save(f"{made}/train_inst/s{i}.png", inst)
        save(f"{made}/train_img/s{i}.png", photo)
    with pytest.raises(DataError, match=r"s\d.png: an 8-bit photo \(mode RGB\), but data.image_bit_depth=16"):
        InputPipeline(load_test_config(f"data.dataroot={made}", *ONE_CHANNEL_16), "train")
    with pytest.raises(DataError, match=r"image_bit_depth=16 with data.output_nc=3"):
        InputPipeline(load_test_config(f"data.dataroot={made}", "data.image_bit_depth=16", "train.batch_size=2"),
                      "train")


def test_a_one_channel_step_with_the_vgg_loss(depth_data):
    config = load_test_config(*TINY, *ONE_CHANNEL_16)
    nets = Networks(config)
    state = fast_state(nets, H, W)
    vgg = VGG19Features()
    vgg_vars = fill_like(jax.eval_shape(vgg.init, jax.random.PRNGKey(0), jnp.zeros((1, H, W, 3))))
    root, made = depth_data
    batch = next(InputPipeline(load_test_config(f"data.dataroot={root}", *TINY, *ONE_CHANNEL_16), "train").iterate(0))
    batch = {k: v for k, v in batch.items() if k != "name"}
    state, metrics, fake = jax.jit(make_train_step(config, 10, vgg.apply))(state, batch, vgg_vars)
    assert fake.shape == (2, H, W, 1)
    assert np.isfinite(float(metrics["loss_G_VGG"])) and float(metrics["loss_G_VGG"]) > 0
    d_kernel = state.d_params["scale_0"]["layer_0"]["conv"]["kernel"]
    assert d_kernel.shape[2] == 35 + 1 + 1  # D sees labels, boundaries and the one-channel photo


def test_a_16_bit_model_writes_16_bit_one_channel_pngs(depth_data, tmp_path):
    root, made = depth_data
    workdir = tmp_path / "model"
    make_model_workdir(workdir, *ONE_CHANNEL_16, f"data.dataroot={root}")
    synth = Synthesizer.from_workdir(str(workdir))
    label, inst, photo = made[("test", "s0")]
    out = synth.synthesize(label, inst)
    assert out.shape == (H, W, 1) and out.dtype == np.uint16
    assert main(["synthesize", "--workdir", str(workdir), "--label", str(root / "test_label"), "--inst",
                 str(root / "test_inst"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    png = Image.open(tmp_path / "out" / "s0_synthesized.png")
    assert png.mode == "I;16" and png.size == (W, H)
    diff = np.abs(np.asarray(png).astype(np.int64) - out[..., 0])  # batched: float rounding, a level at most
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02
    # Styles from a 16-bit real photo (the encoder reads it at 16 bits), and the exported program.
    styles = synth.encode_styles(photo, label, inst)
    assert len(styles) == len(np.unique(inst))
    sig = export.export(str(workdir), str(tmp_path / "export"), "stablehlo", H, W, ["cpu"])
    assert sig["outputs"] == [{"name": "photo", "dtype": "uint16", "shape": ["B", H, W, 1]}]


def test_training_on_16_bit_photos_writes_16_bit_test_results_and_8_bit_grids(depth_data, tmp_path):
    root, _ = depth_data
    workdir = tmp_path / "run"
    args = ["train", "--config", str(ROOT / "configs" / "synthetic_demo.py"), "--workdir", str(workdir), "--quiet",
            f"--config.data.dataroot={root}", "--config.data.resize_or_crop=scale_width",
            "--config.train.max_steps=2", "--config.train.display_freq=2", "--config.train.print_freq=1",
            "--config.loss.lambda_l1=10.0", *[f"--config.{o}" for o in TINY + ONE_CHANNEL_16]]
    assert main(args) == 0
    result = Image.open(workdir / "test_results" / "s0_synthesized.png")
    assert result.mode == "I;16" and result.size == (W, H)
    grid = Image.open(workdir / "samples" / "latest.png")
    assert grid.mode == "RGB"
    rows = [json.loads(line) for line in open(workdir / "tensorboard" / "metrics.jsonl")]
    assert len(rows) == 2 and all(np.isfinite(r["loss_G"]) for r in rows)


def ade20k_tree(root, n_train=3, n_val=2):
    rng = np.random.default_rng(0)
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            name = f"ADE_{split[:5]}_{i:08d}"
            label = rng.integers(0, 151, (4, 8)).repeat(8, 0).repeat(8, 1).astype(np.uint8)  # 64x32
            save(f"{root}/ADEChallengeData2016/annotations/{split}/{name}.png", label)
            (root / "ADEChallengeData2016" / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 64, 3)).astype(np.uint8)).save(
                f"{root}/ADEChallengeData2016/images/{split}/{name}.jpg")


def test_ade20k_tree(tmp_path):
    ade20k_tree(tmp_path)
    config = load_test_config(f"data.dataroot={tmp_path}", "data.dataset_format=ade20k", "data.label_nc=151",
                              "data.use_instance=False", f"data.load_size={W}", "train.batch_size=2")
    train = readers.read_source(config.data, "train")
    test = readers.read_source(config.data, "test")
    assert len(train) == 3 and len(test) == 2 and "validation" in test.description
    assert all(ex.label.endswith(ex.name + ".png") and ex.image.endswith(ex.name + ".jpg") for ex in train.examples)
    batch = next(InputPipeline(config, "train").iterate(0))
    assert batch["label_ids"].shape == (2, H, W) and int(batch["label_ids"].max()) <= 150 and "inst" not in batch
    assert model_inputs(batch, config, xp=np)["label"].shape == (2, H, W, 151)
    with pytest.raises(DataError, match="data.use_instance=False"):
        readers.read_source(load_test_config(f"data.dataroot={tmp_path}", "data.dataset_format=ade20k",
                                             "data.label_nc=151").data, "train")
    orphan = tmp_path / "ADEChallengeData2016" / "images" / "training" / "ADE_extra.jpg"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(orphan)
    with pytest.raises(DataError, match=r"ADE_extra.jpg: no annotation .*ADE_extra.png"):
        readers.read_source(config.data, "train")


def test_the_ade20k_config_follows_the_paper_setup():
    config = load_config(str(ROOT / "configs" / "ade20k_512x512.py"))
    data = config.data
    assert (data.dataset_format, data.label_nc, data.use_instance) == ("ade20k", 151, False)
    assert (data.resize_or_crop, data.load_size, data.fine_size) == ("resize_and_crop", 512, 512)
    assert config.model.netG == "global"
    from pix2pixhd_jax.data import ade20k_labels

    assert len(ade20k_labels.NAMES) == 151 and len(ade20k_labels.THING_IDS) == 100
    assert ade20k_labels.ID_TO_NAME[13] == "person" and 13 in ade20k_labels.THING_IDS
    assert 3 not in ade20k_labels.THING_IDS  # sky is stuff


def test_instances_made_from_label_maps_follow_cityscapes_and_merge_touching_objects(tmp_path):
    car, road, person = 26, 7, 24
    label = np.full((20, 40), road, np.uint8)
    label[2:6, 2:8] = car  # one car
    label[10:14, 2:8] = car  # two cars that touch: one region
    label[10:14, 8:14] = car
    label[2:18, 30:33] = person
    inst = instances.instances_from_labels(label)
    assert inst[3, 3] == car * 1000 and inst[11, 3] == inst[11, 12] == car * 1000 + 1
    assert inst[5, 31] == person * 1000 and (inst[label == road] == road).all()
    true = inst.copy()
    true[10:14, 8:14] = car * 1000 + 2  # the truth tells the touching cars apart
    assert instances.compare(inst, true, label, instances.THINGS["cityscapes"]) == {
        "true_objects": 4, "made_objects": 3, "merged_true_objects": 2, "split_true_objects": 0}
    # The command: a folder in, 16-bit PNGs out; --things picks the classes.
    save(f"{tmp_path}/labels/a_gtFine_labelIds.png", label)
    assert main(["make-instances", "--label", str(tmp_path / "labels"), "--out", str(tmp_path / "out")]) == 0
    png = Image.open(tmp_path / "out" / "a_instanceIds.png")
    assert png.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(png), inst)
    assert main(["make-instances", "--label", str(tmp_path / "labels" / "a_gtFine_labelIds.png"), "--out",
                 str(tmp_path / "only_people"), "--things", "24"]) == 0
    only = np.asarray(Image.open(tmp_path / "only_people" / "a_instanceIds.png"))
    assert only[3, 3] == car and only[5, 31] == person * 1000
    from pix2pixhd_jax.serve import service

    assert service.instances_from_labels is instances.instances_from_labels  # the editor's uploads


def test_instances_of_classes_above_64_are_numbered_across_the_image_to_fit_16_bits(tmp_path):
    from pix2pixhd_jax.serve import ApiError, check_instances

    wall, bed, lamp = 1, 8, 37  # ADE20K: stuff, thing, thing (class*1000+k would pass 65535 for lamp)
    label = np.full((16, 30), wall, np.uint8)
    label[2:6, 2:8] = bed
    label[2:6, 20:24] = lamp
    label[10:14, 20:24] = lamp
    assert instances.png_numbering(instances.THINGS["ade20k"]) == "image"
    assert instances.png_numbering(instances.THINGS["cityscapes"]) == "class"
    save(f"{tmp_path}/labels/ADE_x.png", label)
    assert main(["make-instances", "--label", str(tmp_path / "labels"), "--out", str(tmp_path / "out"),
                 "--dataset", "ade20k"]) == 0
    inst = np.asarray(Image.open(tmp_path / "out" / "ADE_x_instanceIds.png")).astype(np.int32)
    assert (inst[label == wall] == wall).all()
    objects = [inst[3, 3], inst[3, 21], inst[11, 21]]
    assert sorted(objects) == [1000, 1001, 1002]  # three objects, three ids, all >= 1000
    check_instances(label.astype(np.int32), inst, "here")  # the editor takes them as uploads
    inst[3, 3:5] = inst[3, 21]  # one lamp's id on two bed pixels
    with pytest.raises(ApiError, match=rf"instance id {inst[3, 21]} at pixel \(3, 3\) lies on class {bed}"):
        check_instances(label.astype(np.int32), inst, "here")


def test_unknown_label_maps_out_of_range_ids_and_says_how_many(tmp_path, caplog):
    label, _, photo = block_example(W, H)
    label[:4, :10] = 255
    data = {"label": _png(label), "image": _png(photo), "inst": b"", "label_file": "L.png", "inst_file": "",
            "image_file": "P.png"}
    with pytest.raises(DataError, match=r"L.png: label id 255 .*--config.data.unknown_label=K"):
        decode.decode_example(data, 35, False)
    with caplog.at_level(logging.INFO):
        out, _, _ = decode.decode_example(data, 35, False, unknown_label=0)
    assert (out[:4, :10] == 0).all() and (out[4:] == label[4:]).all()
    assert "L.png: 40 pixels with ids >= 35 (up to 255) set to class 0 (data.unknown_label)" in caplog.text
    with pytest.raises(DataError, match="data.unknown_label=40 is not a class of label_nc=35"):
        label_maps.unknown_label_of(load_test_config("data.unknown_label=40").data)


def _png(array):
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_ade20k_through_show_batch_and_train_and_made_instances_train_with_boundaries(tmp_path):
    import shutil

    ade20k_tree(tmp_path / "ade")
    config = str(ROOT / "configs" / "ade20k_512x512.py")
    small = [f"--config.data.dataroot={tmp_path / 'ade'}", f"--config.data.load_size={W}",
             f"--config.data.fine_size={H}", *[f"--config.{o}" for o in TINY], "--config.train.batch_size=2",
             "--config.train.max_steps=2", "--config.train.display_freq=1", "--config.loss.no_vgg_loss=true"]
    assert main(["show-batch", "--config", config, *small, "--out", str(tmp_path / "batch.png")]) == 0
    assert Image.open(tmp_path / "batch.png").size[0] > W
    assert main(["train", "--config", config, *small, "--workdir", str(tmp_path / "ade_run"), "--quiet"]) == 0
    assert (tmp_path / "ade_run" / "checkpoints" / "2").is_dir()
    assert len(list((tmp_path / "ade_run" / "test_results").glob("*_synthesized.png"))) == 2

    # ADE20K has no instance maps: make them (ADE20K's thing classes), lay the data out as the
    # aligned folders, and train with the instance boundary map.
    ade = tmp_path / "ade" / "ADEChallengeData2016"
    aligned = tmp_path / "aligned"
    for split, phase in (("training", "train"), ("validation", "test")):
        assert main(["make-instances", "--label", str(ade / "annotations" / split), "--out",
                     str(aligned / f"{phase}_inst"), "--dataset", "ade20k"]) == 0
        shutil.copytree(ade / "annotations" / split, aligned / f"{phase}_label")
        (aligned / f"{phase}_img").mkdir()
        for jpg in (ade / "images" / split).glob("*.jpg"):
            Image.open(jpg).save(aligned / f"{phase}_img" / f"{jpg.stem}.png")
        for made in (aligned / f"{phase}_inst").glob("*_instanceIds.png"):
            made.rename(made.with_name(made.name.replace("_instanceIds", "")))
    with_inst = [*small, f"--config.data.dataroot={aligned}", "--config.data.dataset_format=aligned",
                 "--config.data.use_instance=True"]
    cfg = load_config(config, with_inst)
    batch = next(InputPipeline(cfg, "train").iterate(0))
    boundary = model_inputs(batch, cfg, xp=np)["label"][..., -1]
    assert boundary.max() == 1.0 and boundary.mean() < 0.9  # edges between made instances
    assert main(["train", "--config", config, *with_inst, "--workdir", str(tmp_path / "inst_run"), "--quiet"]) == 0
    assert (tmp_path / "inst_run" / "checkpoints" / "2").is_dir()
    saved = json.loads((tmp_path / "inst_run" / "config.json").read_text())
    assert saved["data"]["use_instance"] is True and saved["data"]["label_nc"] == 151
