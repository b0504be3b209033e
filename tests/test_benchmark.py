"""The benchmark command: the real train step on random on-device batches, one JSON line."""

import json

import pytest

from conftest import ROOT, load_test_config
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.training.benchmark import benchmark, random_batch

TINY = ("--config.model.ngf=4", "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
        "--config.model.ndf=4", "--config.model.num_D=1", "--config.model.n_layers_D=1")


def test_random_batch_has_what_the_step_reads():
    config = load_test_config()
    batch = random_batch(config, 2, 32, 48)
    assert batch["label"].shape == (2, 32, 48, config.data.label_nc)
    assert batch["boundary"].shape == (2, 32, 48, 1) and batch["inst"].shape == (2, 32, 48)
    assert float(batch["boundary"].max()) == 1.0  # 16x16 blocks: boundaries exist
    assert (batch["label"].sum(-1) == 1).all()


def test_benchmark_with_vgg_and_bf16_reports_consistent_figures():
    config = load_test_config(*TINY, "--config.loss.no_vgg_loss=False", "--config.train.dtype=bfloat16",
                              "--config.model.instance_feat=True", "--config.model.nef=4",
                              "--config.model.n_downsample_E=2")
    result = benchmark(config, 32, 32, 2, steps=2, warmup=0)
    assert result["vgg"] and result["dtype"] == "bfloat16"
    assert result["median_step_s"] > 0 and result["images_per_s"] == pytest.approx(2 / result["median_step_s"], rel=1e-2)
    assert result["flops_per_step"] > 1e6  # XLA's count of the whole step, VGG included
    assert result["tflops_per_s"] == pytest.approx(result["flops_per_step"] / result["median_step_s"] / 1e12, abs=2e-3)
    assert result["peak_memory_bytes"] > 0 and result["synthesis_median_s"] > 0


def test_benchmark_cli_prints_one_json_line_and_rejects_bad_sizes(capsys):
    assert main(["benchmark", "--config", str(ROOT / "configs" / "synthetic_demo.py"), "--height", "32", "--width", "64",
                 "--batch", "1", "--steps", "1", "--warmup", "0", "--no-synthesis", *TINY]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1]
    result = json.loads(line)
    assert (result["height"], result["width"], result["batch"]) == (32, 64, 1)
    assert "synthesis_median_s" not in result
    assert main(["benchmark", "--config", str(ROOT / "configs" / "synthetic_demo.py"), "--height", "30", "--width", "64",
                 *TINY]) == 2
    assert "multiples of 4" in capsys.readouterr().err
    with pytest.raises(UserError):
        benchmark(load_test_config(*TINY), 32, 32, 1, steps=0)
