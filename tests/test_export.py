"""`pix2pixhd-jax export`: the artifacts run without this project and give synthesize's pixels.

StableHLO artifacts are loaded with jax.export.deserialize in a process that cannot import
pix2pixhd_jax; ONNX ones with onnxruntime alone. On the CPU in float32 the StableHLO program is
the synthesizer's own, so its pixels are identical; in bfloat16/float16 it equals the
synthesizer run in that dtype. ONNX Runtime's float arithmetic differs from XLA's by rounding,
so its photos may differ by one level on a few pixels (at most 0.1% here).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, block_example, make_model_workdir, make_oasis_workdir
from lowering import conv_layers, convolutions
from pix2pixhd_jax.cli import main
from pix2pixhd_jax.errors import CheckpointError, ExportError
from pix2pixhd_jax.inference import export
from pix2pixhd_jax.inference.synthesis import Synthesizer

H, W = 32, 48  # multiples of the tiny generator's factor, 4
NO_PROJECT = "import sys; sys.modules['pix2pixhd_jax'] = None\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("model")
    make_model_workdir(workdir)
    return workdir


def scenes(n, seed=0):
    """n block label maps with their instance maps (objects label*1000+k), H x W."""
    out = [block_example(W, H, block=8, seed=seed + i)[:2] for i in range(n)]
    return [o[0].astype(np.int32) for o in out], [o[1].astype(np.int32) for o in out]


def program_inputs(synth, labels, insts, seed=0):
    features = np.stack([export.style_features(synth, lab, ins, seed=seed) for lab, ins in zip(labels, insts)])
    return {"label_ids": np.stack(labels), "inst_ids": np.stack(insts), "features": features}


def run_without_project(code, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(NO_PROJECT + code)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_stablehlo_artifact_runs_without_the_project_and_writes_synthesizes_pixels(model, tmp_path):
    out = tmp_path / "export"
    assert main(["export", "--workdir", str(model), "--out", str(out), "--height", str(H), "--width", str(W)]) == 0
    sig = json.loads((out / "signature.json").read_text())
    assert sig["platforms"] == ["cpu", "cuda", "tpu"] and sig["artifact"] == "generator.jax"
    assert [(i["name"], i["dtype"], i["shape"]) for i in sig["inputs"]] == [
        ("label_ids", "int32", ["B", H, W]), ("inst_ids", "int32", ["B", H, W]),
        ("features", "float32", ["B", H, W, 3])]
    assert sig["outputs"] == [{"name": "photo", "dtype": "uint8", "shape": ["B", H, W, 3]}]

    synth = Synthesizer.from_workdir(str(model))
    labels, insts = scenes(3)
    want = synth.synthesize_batch(labels, insts, seed=5)  # what the synthesize command writes
    np.savez(tmp_path / "inputs.npz", **program_inputs(synth, labels, insts, seed=5))
    run_without_project(f"""
import numpy as np
from jax import export
program = export.deserialize(open({str(out / 'generator.jax')!r}, "rb").read())
x = np.load("inputs.npz")
three = np.asarray(program.call(x["label_ids"], x["inst_ids"], x["features"]))
one = np.asarray(program.call(x["label_ids"][1:2], x["inst_ids"][1:2], x["features"][1:2]))
np.savez("out.npz", three=three, one=one)
""", tmp_path)
    got = np.load(tmp_path / "out.npz")
    assert got["three"].dtype == np.uint8 and got["three"].shape == (3, H, W, 3)
    np.testing.assert_array_equal(got["three"], want)
    np.testing.assert_array_equal(got["one"], want[1:2])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_artifacts_equal_synthesize_in_that_dtype(model, tmp_path, dtype):
    sig = export.export(str(model), str(tmp_path), "stablehlo", H, W, ["cpu"], dtype)
    assert sig["dtype"] == dtype
    synth = Synthesizer.from_workdir(str(model), dtype=dtype)
    labels, insts = scenes(2, seed=10)
    want = synth.synthesize_batch(labels, insts)
    from jax import export as jax_export

    program = jax_export.deserialize((tmp_path / "generator.jax").read_bytes())
    got = np.asarray(program.call(*program_inputs(synth, labels, insts).values()))
    np.testing.assert_array_equal(got, want)
    # The reduced-precision photo stays near the float32 one (a random tiny network).
    f32 = Synthesizer.from_workdir(str(model)).synthesize_batch(labels, insts)
    diff = np.abs(got.astype(np.int32) - f32.astype(np.int32))
    assert diff.mean() < 3.0 and np.percentile(diff, 99) <= 16, (dtype, diff.mean(), np.percentile(diff, 99))


def test_onnx_artifact_runs_with_onnxruntime_alone_and_matches_synthesize(model, tmp_path):
    pytest.importorskip("jax2onnx", reason="ONNX export needs jax2onnx (requirements-onnx.txt)")
    pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime")
    out = tmp_path / "onnx"
    assert main(["export", "--workdir", str(model), "--out", str(out), "--format", "onnx", "--height", str(H),
                 "--width", str(W)]) == 0
    sig = json.loads((out / "signature.json").read_text())
    assert sig["artifact"] == "generator.onnx" and sig["onnxruntime_check"]["max_level_difference"] <= 1
    synth = Synthesizer.from_workdir(str(model))
    labels, insts = scenes(3, seed=20)
    want = synth.synthesize_batch(labels, insts, seed=2)
    np.savez(tmp_path / "inputs.npz", **program_inputs(synth, labels, insts, seed=2))
    run_without_project(f"""
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession({str(out / 'generator.onnx')!r}, providers=["CPUExecutionProvider"])
assert [i.name for i in session.get_inputs()] == ["label_ids", "inst_ids", "features"]
x = dict(np.load("inputs.npz"))
three = session.run(["photo"], x)[0]
one = session.run(["photo"], {{k: v[:1] for k, v in x.items()}})[0]
np.savez("out.npz", three=three, one=one)
""", tmp_path)
    got = np.load(tmp_path / "out.npz")
    assert got["three"].dtype == np.uint8 and got["three"].shape == (3, H, W, 3) and got["one"].shape[0] == 1
    for photo, ref in ((got["three"], want), (got["one"], want[:1])):
        diff = np.abs(photo.astype(np.int32) - ref.astype(np.int32))
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).mean())


def test_cuda_export_carries_one_convolution_per_generator_layer(model, tmp_path):
    from jax import export as jax_export

    assert main(["export", "--workdir", str(model), "--out", str(tmp_path), "--height", str(H), "--width", str(W),
                 "--platforms", "cuda"]) == 0
    program = jax_export.deserialize((tmp_path / "generator.jax").read_bytes())
    assert program.platforms == ("cuda",)
    layers = conv_layers(Synthesizer.from_workdir(str(model)).g_vars["params"])
    assert convolutions(program.mlir_module()) == layers > 0


def test_bad_export_flags_are_clear_errors(model, tmp_path, capsys):
    with pytest.raises(ExportError, match=r"--height 30 --width 48: both must be positive multiples of 4"):
        export.export(str(model), str(tmp_path), "stablehlo", 30, W)
    with pytest.raises(ExportError, match=r"--platforms cpu,gpu: gpu not among cpu, cuda, rocm, tpu"):
        export.export(str(model), str(tmp_path), "stablehlo", H, W, ["cpu", "gpu"])
    with pytest.raises(ExportError, match="--format onnx --dtype bfloat16"):
        export.export(str(model), str(tmp_path), "onnx", H, W, dtype="bfloat16")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not a pix2pixhd-jax workdir"):
        export.export(str(empty), str(tmp_path), "stablehlo", H, W)
    assert main(["export", "--workdir", str(model), "--out", str(tmp_path / "x"), "--height", "30", "--width",
                 str(W)]) == 2
    assert "multiples of 4" in capsys.readouterr().err
    assert not (tmp_path / "x" / "signature.json").exists()


def test_the_signature_and_example_inputs_of_a_model_without_instances_or_encoder(tmp_path):
    make_model_workdir(tmp_path, "model.instance_feat=False", "data.use_instance=False")
    synth = Synthesizer.from_workdir(str(tmp_path))
    sig = export.signature(synth, H, W)
    assert [i["name"] for i in sig["inputs"]] == ["label_ids"]
    inputs = export.example_inputs(synth, sig, batch=2)
    program = export.export_stablehlo(synth, H, W, ["cpu"])
    np.testing.assert_array_equal(np.asarray(program.call(inputs["label_ids"])),
                                  synth.synthesize_batch(list(inputs["label_ids"])))
    with pytest.raises(ExportError, match="no feature encoder"):
        export.style_features(synth, inputs["label_ids"][0])


def test_an_imported_reference_generator_exports_the_references_pictures(tmp_path):
    """NVIDIA's checkpoint path: a reference-layout G (random weights) imported with import-torch,
    exported, run: its photo is the reference's tensor2im of the reference's own forward pass."""
    torch = pytest.importorskip("torch", reason="the reference's networks need torch")
    import torch_reference as ref

    overrides = ["--config.model.ngf=8", "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=2",
                 "--config.data.label_nc=12"]
    g = ref.randomize(ref.GlobalGenerator(12 + 1, 3, 8, 2, 2), seed=3).eval()
    torch.save(g.state_dict(), tmp_path / "latest_net_G.pth")
    workdir, out = tmp_path / "work", tmp_path / "export"
    assert main(["import-torch", "--config", str(ROOT / "configs" / "synthetic_demo.py"), *overrides,
                 "--netG", str(tmp_path / "latest_net_G.pth"), "--workdir", str(workdir)]) == 0
    assert main(["export", "--workdir", str(workdir), "--out", str(out), "--height", str(H), "--width", str(W),
                 "--platforms", "cpu"]) == 0
    from jax import export as jax_export

    labels, insts = scenes(2, seed=30)
    labels = [lab % 12 for lab in labels]
    insts = [(lab * 1000 + ins % 1000) for lab, ins in zip(labels, insts)]
    program = jax_export.deserialize((out / "generator.jax").read_bytes())
    got = np.asarray(program.call(np.stack(labels), np.stack(insts)))

    # The reference's test.py: one-hot labels and get_edges' boundary map in, util.tensor2im out.
    label_t = torch.from_numpy(np.stack(labels)[:, None].astype(np.int64))
    one_hot = torch.zeros(2, 12, H, W).scatter_(1, label_t, 1.0)
    edge = ref.get_edges(torch.from_numpy(np.stack(insts)[:, None].astype(np.int64)))
    with torch.no_grad():
        fake = g(torch.cat([one_hot, edge], 1)).numpy().transpose(0, 2, 3, 1)
    reference = ref.tensor2im(fake)
    diff = np.abs(got.astype(np.int32) - reference.astype(np.int32))
    assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).mean())


def test_an_oasis_generator_exports_with_its_noise_as_an_input(tmp_path):
    """A SPADE G with 3D noise: the noise is the program's input, so the artifact's photo is a
    function of its inputs; given synthesize's noise it gives synthesize's pixels, given a noise
    map that differs by region it gives the synthesizer's picture for that map."""
    from jax import export as jax_export

    workdir, out = tmp_path / "oasis", tmp_path / "export"
    make_oasis_workdir(workdir, steps=1)
    assert main(["export", "--workdir", str(workdir), "--out", str(out), "--height", str(H), "--width", str(W),
                 "--platforms", "cpu"]) == 0
    sig = json.loads((out / "signature.json").read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in sig["inputs"]] == [
        ("label_ids", "int32", ["B", H, W]), ("noise", "float32", ["B", H, W, 4])]
    assert sig["z_dim"] == 4
    synth = Synthesizer.from_workdir(str(workdir))
    labels, _ = scenes(3, seed=40)
    inputs = export.program_inputs(synth, labels, seed=3, sample=1, resize="none")
    assert list(inputs) == ["label_ids", "noise"] and inputs["noise"].shape == (3, H, W, 4)
    program = jax_export.deserialize((out / "generator.jax").read_bytes())
    want = synth.synthesize_batch(labels, seed=3, sample=1)
    first = np.asarray(program.call(*inputs.values()))
    np.testing.assert_array_equal(np.asarray(program.call(*inputs.values())), first)  # nothing drawn inside
    # The artifact (batch size symbolic) and the synthesizer are compiled apart: on some CPUs float
    # rounding moves a value by one level here and there.
    diff = np.abs(first.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    regional = inputs["noise"].copy()
    regional[:, :, W // 2:] = np.random.default_rng(0).standard_normal(4)
    got = np.asarray(program.call(inputs["label_ids"], regional))
    # The synthesizer's program for a noise map is compiled apart (XLA fuses it otherwise): float
    # rounding moves a value by one level here and there.
    diff = np.abs(got.astype(int) - synth.synthesize_batch(labels, noise=regional).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    assert np.abs(got.astype(int) - want.astype(int)).mean() > 0.5
    # A restyled object's noise, as synthesize builds it.
    styles = [{int(labels[0][0, 0]): 2}, None, None]
    styled = export.program_inputs(synth, labels, styles=styles, seed=3, resize="none")
    diff = np.abs(np.asarray(program.call(*styled.values())).astype(int)
                  - synth.synthesize_batch(labels, styles=styles, seed=3).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
    plain = export.program_inputs(synth, labels, seed=3, resize="none")["noise"]
    assert not np.array_equal(styled["noise"][0], plain[0]) and np.array_equal(styled["noise"][1:], plain[1:])
    example = export.example_inputs(synth, sig, batch=2)
    assert example["noise"].shape == (2, H, W, 4) and example["noise"].dtype == np.float32
