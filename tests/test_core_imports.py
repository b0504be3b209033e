"""Every module imports without TensorFlow, ml_collections or torch: the GPU machines have none.

TensorFlow is imported when an input pipeline is built; only the TFDS builders import it (and
TFDS) at their top.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pix2pixhd_jax"
NEEDS_TENSORFLOW = {"pix2pixhd_jax.data.tfds_builders"}
BLOCK = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
         "sys.modules['torch'] = None; sys.modules['ml_collections'] = None; ")


def package_modules():
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_every_module_imports_without_tensorflow():
    modules = [m for m in package_modules() if m not in NEEDS_TENSORFLOW]
    assert "pix2pixhd_jax.data.pipeline" in modules and "pix2pixhd_jax.cli" in modules
    code = BLOCK + (
        "import importlib, traceback\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"modules that need TensorFlow, torch or ml_collections:\n{result.stdout}"


def test_blocking_tensorflow_does_break_a_module_that_imports_it():
    # The check above can fail: blocking TF breaks the TFDS builders, which import it at their top.
    code = "import sys; sys.modules['tensorflow'] = None; import pix2pixhd_jax.data.tfds_builders"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "tensorflow" in result.stderr


def test_building_a_pipeline_without_tensorflow_says_what_to_install(tmp_path):
    from conftest import make_aligned

    make_aligned(tmp_path, "train", n=2)
    code = BLOCK + (
        "sys.path.insert(0, 'tests')\n"
        "from conftest import load_test_config\n"
        "from pix2pixhd_jax.data.pipeline import InputPipeline\n"
        "from pix2pixhd_jax.errors import DataError\n"
        f"config = load_test_config('--config.data.dataroot={tmp_path}', '--config.train.batch_size=1')\n"
        "try:\n"
        "    InputPipeline(config, 'train')\n"
        "except DataError as e:\n"
        "    print('DataError:', e)\n")
    result = subprocess.run([sys.executable, "-c", code.replace("sys.modules['ml_collections'] = None; ", "")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "DataError:" in result.stdout and "pip install tensorflow-cpu" in result.stdout


def test_synthesis_from_a_workdir_needs_neither_tensorflow_nor_ml_collections(tmp_path):
    from conftest import make_model_workdir

    make_model_workdir(tmp_path)
    code = BLOCK + ("import numpy as np; "
                    "from pix2pixhd_jax.inference.synthesis import Synthesizer; "
                    f"s = Synthesizer.from_workdir({str(tmp_path)!r}); "
                    "print(s.synthesize(np.full((20, 30), 7), None).shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "(20, 30, 3)" in result.stdout
