"""Core modules import without TensorFlow: the GPU machines have none."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = [
    "pix2pixhd_jax",
    "pix2pixhd_jax.inputs",
    "pix2pixhd_jax.visualize",
    "pix2pixhd_jax.config_loading",
    "pix2pixhd_jax.cli",
    "pix2pixhd_jax.data.synthetic",
    "pix2pixhd_jax.data.readers",
    "pix2pixhd_jax.data.decode",
    "pix2pixhd_jax.data.transforms",
    "pix2pixhd_jax.models",
    "pix2pixhd_jax.models.unet",
    "pix2pixhd_jax.models.vgg",
    "pix2pixhd_jax.models.inception",
    "pix2pixhd_jax.models.inception_weights",
    "pix2pixhd_jax.metrics",
    "pix2pixhd_jax.losses",
    "pix2pixhd_jax.interop",
    "pix2pixhd_jax.checkpoint",
    "pix2pixhd_jax.schedule",
    "pix2pixhd_jax.image_pool",
    "pix2pixhd_jax.sharding",
    "pix2pixhd_jax.train_step",
    "pix2pixhd_jax.metric_writer",
    "pix2pixhd_jax.train",
    "pix2pixhd_jax.features",
    "pix2pixhd_jax.encode_features",
    "pix2pixhd_jax.synthesis",
    "pix2pixhd_jax.synthesize_files",
    "pix2pixhd_jax.editing",
    "pix2pixhd_jax.benchmark",
    "pix2pixhd_jax.distributed",
    "pix2pixhd_jax.segmentation",
    "pix2pixhd_jax.models.segmenter",
    "pix2pixhd_jax.evaluate",
    "pix2pixhd_jax.serve",
]


@pytest.mark.parametrize("module", CORE)
def test_imports_without_tensorflow(module):
    # ml_collections is not on the GPU machines either; torch is optional.
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
            "sys.modules['torch'] = None; sys.modules['ml_collections'] = None; "
            f"import {module}")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_pipeline_does_need_tensorflow():
    # The check above can fail: blocking TF does break a module that imports it.
    code = "import sys; sys.modules['tensorflow'] = None; import pix2pixhd_jax.data.pipeline"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "tensorflow" in result.stderr


def test_synthesis_from_a_workdir_needs_neither_tensorflow_nor_ml_collections(tmp_path):
    from conftest import make_model_workdir

    make_model_workdir(tmp_path)
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
            "sys.modules['ml_collections'] = None; import numpy as np; "
            "from pix2pixhd_jax.synthesis import Synthesizer; "
            f"s = Synthesizer.from_workdir({str(tmp_path)!r}); "
            "print(s.synthesize(np.full((20, 30), 7), None).shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "(20, 30, 3)" in result.stdout
