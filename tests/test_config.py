"""Configs load, carry the reference's defaults, and take typed --config overrides."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pix2pixhd_jax.config_loading import Config, ConfigError, load_config, split_config_args

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["default", "synthetic_demo", "cityscapes_1024x512", "cityscapes_2048x1024",
                                  "edges2photo", "pix2pix_baseline", "synthetic_features", "cityscapes_samples",
                                  "ablation_synthetic", "paper_comparison", "reference_training"])
def test_every_config_loads(name):
    cfg = load_config(str(CONFIGS / f"{name}.py"))
    assert {"data", "model", "loss", "train"} <= set(cfg.keys())


def test_default_matches_the_reference():
    cfg = load_config(str(CONFIGS / "default.py"))
    m, d, t, l = cfg.model, cfg.data, cfg.train, cfg.loss
    assert (d.label_nc, d.use_instance, d.resize_or_crop, d.load_size, d.fine_size) == (35, True, "scale_width", 1024, 512)
    assert (m.netG, m.ngf, m.n_downsample_global, m.n_blocks_global, m.norm) == ("global", 64, 4, 9, "instance")
    assert (m.ndf, m.n_layers_D, m.num_D) == (64, 3, 2)
    assert (m.feat_num, m.nef, m.n_downsample_E, m.n_clusters) == (3, 16, 4, 10)
    assert (l.lambda_feat, l.no_lsgan, l.no_vgg_loss, l.no_ganFeat_loss) == (10.0, False, False, False)
    assert (t.lr, t.beta1, t.beta2, t.batch_size, t.niter, t.niter_decay) == (2e-4, 0.5, 0.999, 1, 100, 100)


def test_2048_stage_matches_the_reference_script():
    cfg = load_config(str(CONFIGS / "cityscapes_2048x1024.py"))
    m, t = cfg.model, cfg.train
    assert (m.netG, m.ngf, m.num_D, m.n_local_enhancers, m.n_blocks_local) == ("local", 32, 3, 1, 3)
    assert (t.niter, t.niter_decay, t.niter_fix_global) == (50, 50, 10)


def test_overrides_keep_types():
    cfg = load_config(str(CONFIGS / "default.py"),
                      ["data.label_nc=0", "--config.data.no_flip=true", "train.lr=1e-3", "data.dataroot=/x"])
    assert cfg.data.label_nc == 0 and cfg.data.no_flip is True and cfg.train.lr == 1e-3
    assert cfg.data.dataroot == "/x"


@pytest.mark.parametrize("override, message", [
    ("data.label_nk=3", "no field 'label_nk'"),
    ("dta.label_nc=3", "no field 'dta'"),
    ("data.label_nc=many", "expected an integer"),
    ("data.no_flip=maybe", "expected true or false"),
    ("data.label_nc", "expected --config.key=value"),
])
def test_bad_overrides_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(str(CONFIGS / "default.py"), [override])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("configs/nope.py")


def test_split_config_args():
    assert split_config_args(["show-batch", "--config", "c.py", "--config.a=1"]) == (
        ["--config.a=1"], ["show-batch", "--config", "c.py"])


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        out.update(_flat(v, f"{prefix}{k}.") if hasattr(v, "items") else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("variant, changed", [
    ("pix2pixhd", {}),
    ("pix2pixhd_gan_fm", {"loss.lambda_l1": 0.0}),
    ("pix2pixhd_vgg", {"loss.lambda_l1": 0.0, "loss.no_vgg_loss": False}),
    ("no_instance", {"data.use_instance": False}),
    ("single_d", {"model.num_D": 1}),
])
def test_ablation_variants_change_one_thing(variant, changed):
    """Each pix2pixHD ablation differs from the base variant in exactly its own fields."""
    from pix2pixhd_jax.models.pix2pixhd import size_divisor

    base = _flat(load_config(str(CONFIGS / "ablation_synthetic.py")))
    cfg = load_config(str(CONFIGS / f"ablation_synthetic.py:{variant}"))
    diff = {k: v for k, v in _flat(cfg).items() if base.get(k) != v and k != "name"}
    assert diff == changed
    assert cfg.data.fine_size % size_divisor(cfg.model) == 0


def test_ablation_pix2pix_is_the_baseline_at_the_demo_budget():
    from pix2pixhd_jax.models.pix2pixhd import size_divisor

    cfg = load_config(str(CONFIGS / "ablation_synthetic.py:pix2pix"))
    base = load_config(str(CONFIGS / "ablation_synthetic.py"))
    assert (cfg.model.netG, cfg.model.netD, cfg.model.norm, cfg.loss.no_lsgan, cfg.loss.lambda_l1) == (
        "unet_128", "patch", "batch", True, 100.0)
    assert not cfg.data.use_instance and cfg.loss.no_ganFeat_loss
    # Same data, crops, batch, lr and schedule as the pix2pixHD variants.
    for group, key in [("data", "fine_size"), ("data", "load_size"), ("train", "batch_size"), ("train", "lr"),
                       ("train", "niter"), ("train", "niter_decay")]:
        assert cfg[group][key] == base[group][key]
    assert cfg.data.fine_size % size_divisor(cfg.model) == 0


def test_unknown_ablation_variant():
    with pytest.raises(Exception, match="not one of"):
        load_config(str(CONFIGS / "ablation_synthetic.py:sideways"))


def test_a_loaded_config_is_one_shape_and_its_own_json():
    cfg = load_config(str(CONFIGS / "synthetic_demo.py"), ["data.label_nc=7"])
    assert type(cfg) is Config and type(cfg.data) is Config and cfg.data.label_nc == cfg["data"]["label_nc"] == 7
    assert json.loads(json.dumps(cfg)) == cfg
    with pytest.raises(AttributeError):
        cfg.data.no_such_setting  # noqa: B018


# Settings that later versions added: a workdir from before them has a config.json without them.
ADDED_LATER = {"data": ("image_bit_depth", "unknown_label", "device_prefetch", "prepared_dir", "output_nc"),
               "model": ("norm_E", "load_features", "netD"), "train": ("eval_every", "remat", "max_steps")}


def _strip(workdir):
    """Rewrite the workdir's config.json as an older version wrote it: without ADDED_LATER and the
    segmenter group (a group is not filled in: the groups say what kind of workdir it is)."""
    path = workdir / "config.json"
    saved = json.loads(path.read_text())
    for group, keys in ADDED_LATER.items():
        for key in keys:
            del saved[group][key]
    del saved["segmenter"]
    path.write_text(json.dumps(saved))


def test_an_old_workdirs_config_gets_the_settings_it_lacks_and_synthesizes_as_before(tmp_path):
    from conftest import block_example, make_model_workdir
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    config, _ = make_model_workdir(tmp_path)
    label, inst, _ = block_example(32, 24, block=8)
    want = Synthesizer.from_workdir(str(tmp_path)).synthesize(label, inst)
    _strip(tmp_path)
    saved = checkpoint.read_config(str(tmp_path), checkpoint.MODEL_GROUPS)
    assert type(saved) is Config and saved == {k: v for k, v in config.items() if k != "segmenter"}
    np.testing.assert_array_equal(Synthesizer.from_workdir(str(tmp_path)).synthesize(label, inst), want)


def test_an_old_workdirs_config_gets_its_defaults_without_ml_collections(tmp_path):
    """The accelerator images have no ml_collections: configs/default.py's values still fill the gaps."""
    from conftest import make_model_workdir

    config, _ = make_model_workdir(tmp_path)
    _strip(tmp_path)
    code = ("import sys, json; sys.modules['ml_collections'] = None\n"
            "from pix2pixhd_jax import checkpoint\n"
            f"print(json.dumps(checkpoint.read_config({str(tmp_path)!r})))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=CONFIGS.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {k: v for k, v in config.items() if k != "segmenter"}
