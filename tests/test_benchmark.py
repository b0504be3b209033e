"""The benchmark command: the real train step on random on-device batches, one JSON line."""

import json

import numpy as np
import pytest

from conftest import ROOT, load_test_config
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.models.pix2pixhd import model_inputs
from pix2pixhd_jax.training.benchmark import benchmark, random_batch

TINY = ("--config.model.ngf=4", "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
        "--config.model.ndf=4", "--config.model.num_D=1", "--config.model.n_layers_D=1")


def test_random_batch_is_what_the_pipeline_carries_and_builds_the_step_inputs():
    config = load_test_config()
    batch = random_batch(config, 2, 32, 48)
    assert set(batch) == {"label_ids", "inst", "image"}
    assert batch["label_ids"].dtype == np.uint8 and batch["inst"].dtype == np.uint16 and batch["image"].dtype == np.uint8
    assert batch["image"].shape == (2, 32, 48, 3) and batch["inst"].shape == (2, 32, 48)
    assert int(batch["label_ids"].max()) < config.data.label_nc
    inputs = model_inputs(batch, config)
    label_nc = config.data.label_nc
    assert inputs["label"].shape == (2, 32, 48, label_nc + 1)
    assert float(inputs["label"][..., label_nc].max()) == 1.0  # 16x16 blocks: boundaries exist
    assert (inputs["label"][..., :label_nc].sum(-1) == 1).all()


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


def test_compile_only_reports_xlas_memory_estimate_of_the_accelerator_program(capsys):
    args = ["benchmark", "--config", str(ROOT / "configs" / "synthetic_demo.py"), "--width", "64", "--compile-only",
            *TINY]
    results = {}
    for batch in (1, 4):
        assert main([*args, "--height", "32", "--batch", str(batch)]) == 0
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")][-1]
        results[batch] = json.loads(line)
    one, four = results[1], results[4]
    assert one["what"] == "train_step_compile" and "median_step_s" not in one and one["compile_s"] > 0
    parts = one["argument_bytes"] + one["output_bytes"] + one["temp_bytes"] - one["alias_bytes"]
    assert one["estimated_device_bytes"] == parts > 0
    # The state is donated: its buffers alias the new state's, so the alias is at least the parameters.
    assert one["alias_bytes"] > 0
    # Four times the batch: more activations, the same parameters.
    assert four["temp_bytes"] > one["temp_bytes"] and four["estimated_device_bytes"] > one["estimated_device_bytes"]
    assert four["flops_per_step"] == pytest.approx(4 * one["flops_per_step"], rel=0.25)
