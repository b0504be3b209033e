"""The pix2pixhd-jax command end to end: make-synthetic, then show-batch on its output."""

import json

import numpy as np
from PIL import Image

from conftest import ROOT
from pix2pixhd_jax.cli import main


def test_make_synthetic_then_show_batch(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(["make-synthetic", "--out", str(out), "--num-train", "4", "--num-test", "2",
                 "--size", "128x64", "--seed", "3", "--workers", "1", "--quiet"]) == 0
    for phase, n in (("train", 4), ("test", 2)):
        for kind in ("label", "inst", "img"):
            assert len(list((out / f"{phase}_{kind}").glob("*.png"))) == n
        assert len((out / f"{phase}_styles.jsonl").read_text().splitlines()) == n
    info = json.loads((out / "synthetic_info.json").read_text())
    assert (info["width"], info["height"], info["seed"]) == (128, 64, 3)

    picture = tmp_path / "batch.png"
    assert main(["show-batch", "--config", str(ROOT / "configs" / "synthetic_demo.py"),
                 f"--config.data.dataroot={out}", "--config.data.load_size=128",
                 "--config.train.batch_size=2", "--out", str(picture)]) == 0
    printed = capsys.readouterr().out
    assert "label" in printed and "boundary" in printed and str(picture) in printed
    img = np.asarray(Image.open(picture))
    # Two rows of four 128x64 panels (label colours, instances, boundaries, photo) with 2 px gaps.
    assert img.shape == (2 + 2 * 66, 2 + 4 * 130, 3)


def test_data_errors_exit_2_with_the_message(tmp_path, capsys):
    code = main(["show-batch", "--config", str(ROOT / "configs" / "synthetic_demo.py"),
                 f"--config.data.dataroot={tmp_path}/missing"])
    assert code == 2
    assert "train_label: folder not found" in capsys.readouterr().err


def test_overrides_on_a_command_without_config_are_refused(tmp_path):
    import pytest
    with pytest.raises(SystemExit):
        main(["make-synthetic", "--out", str(tmp_path), "--config.data.label_nc=3"])
