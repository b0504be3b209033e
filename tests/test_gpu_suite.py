"""experiments/gpu_suite.sh --smoke: the GPU suite's every figure, at tiny sizes on this CPU."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

FIGURES = ("train_1024x512_f32", "train_1024x512_bf16", "train_2048x1024_bf16_remat", "synthesis_2048x1024_bf16",
           "train_1024x512_bf16_largest_batch", "artifact_2048x1024_f32", "artifact_2048x1024_bf16",
           "train_oasis_512x256_bf16", "reference_1024x512_f32", "reference_1024x512_amp")
FIELDS = ("what", "device_kind", "images_per_s", "median_step_s", "peak_memory_bytes", "dtype", "height", "width",
          "batch", "commit", "date")


def test_the_smoke_run_writes_a_record_per_figure(tmp_path):
    out = tmp_path / "records"
    env = dict(os.environ, PYTHON=sys.executable)  # with the tests' XLA flags (conftest)
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_suite.sh"), "--smoke", "--out", str(out),
                           "--commit", "test"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert set(FIGURES) <= set(records), sorted(records)
    for what in FIGURES:
        rec = records[what]
        assert rec["what"] == what and rec["smoke"] is True and rec["commit"] == "test"
        if what.startswith("reference"):  # needs a fetched NVIDIA/pix2pixHD (--ref)
            assert "--ref" in rec["skipped"]
            continue
        assert "skipped" not in rec, rec
        assert set(FIELDS) <= set(rec), (what, sorted(set(FIELDS) - set(rec)))
        assert rec["median_step_s"] > 0 and rec["images_per_s"] > 0 and (rec["height"], rec["width"]) == (32, 64)
    assert records["train_1024x512_bf16"]["dtype"] == "bfloat16" and records["train_1024x512_bf16"]["vgg"]
    assert records["train_2048x1024_bf16_remat"]["remat"] and records["train_2048x1024_bf16_remat"]["num_D"] == 3
    assert records["train_1024x512_bf16_largest_batch"]["batch"] >= 2
    assert records["artifact_2048x1024_bf16"]["artifact_bytes"] > 0
    oasis = records["train_oasis_512x256_bf16"]
    assert (oasis["netG"], oasis["netD"], oasis["vgg"], oasis["batch"]) == ("spade", "oasis", False, 4)
