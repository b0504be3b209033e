"""`pix2pixhd-jax export`: the trained generator as a program that runs without this project.

Two formats of the same program (`synthesis.photo_program` with the weights bound in):

  stablehlo  OUT/generator.jax: the bytes of `jax.export.Exported.serialize()`, lowered for
             every platform asked for (default cpu, cuda, tpu), with a symbolic batch size.
             Load it with `jax.export.deserialize(open(path, "rb").read())` and `.call(...)`;
             nothing of this project needs to be installed.
  onnx       OUT/generator.onnx, converted by jax2onnx (JAX's traced program to ONNX operators,
             no TensorFlow in between) with a dynamic batch size, checked with onnxruntime:
             the path to TensorRT.

The contract, the same for both, is written to OUT/signature.json:
  inputs   label_ids  int32 [B, H, W]               (label_nc > 0) class ids 0..label_nc-1
           label_rgb  uint8 [B, H, W, input_nc]     (label_nc == 0) the label image
           inst_ids   int32 [B, H, W]               (data.use_instance) instance ids
           features   float32 [B, H, W, feat_num]   (the feature encoder) every pixel's style
           noise      float32 [B, H, W, z_dim]      (3D noise: netG=spade, model.z_dim > 0) G's
                                                    noise; synthesize draws one z ~ N(0, I) per
                                                    picture, the same at every pixel
  output   photo      uint8 [B, H, W, output_nc]    the pixels `synthesize` writes for these inputs
                      (uint16 for data.image_bit_depth=16)
The program draws nothing itself: its photo is a function of its inputs.
One-hot labels, instance boundaries and the conversion to uint8 happen inside the program.
`program_inputs` makes those inputs from label maps of any size the way `synthesize` does:
scaled by the model's test transform, the features from styles or the model's clusters, the
noise from (seed, sample).
"""

import json
import logging
import os
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data.synthetic.blocks import block_maps, grid_shape
from pix2pixhd_jax.errors import ExportError
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models import conv

FORMATS = ("stablehlo", "onnx")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")
SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "pix2pixhd_jax.generator/1"
ARTIFACTS = {"stablehlo": "generator.jax", "onnx": "generator.onnx"}
# ONNX Runtime has no bfloat16 convolutions on the CPU.
ONNX_DTYPES = ("float32", "float16")


def signature(synth: Synthesizer, height: int, width: int) -> dict:
    """The program's inputs and output (shapes with 'B' for the batch) for a model and size."""
    data = synth.config.data
    inputs = []
    if synth.maps.label_nc:
        inputs.append({"name": "label_ids", "dtype": "int32", "shape": ["B", height, width],
                       "meaning": f"class ids 0..{synth.maps.label_nc - 1}"})
    else:
        inputs.append({"name": "label_rgb", "dtype": "uint8", "shape": ["B", height, width, int(data.input_nc)],
                       "meaning": "the label image"})
    if synth.maps.use_instance:
        inputs.append({"name": "inst_ids", "dtype": "int32", "shape": ["B", height, width],
                       "meaning": "instance ids; Cityscapes' convention: class*1000+k for objects, the class id "
                                  "for stuff"})
    if synth.has_encoder:
        inputs.append({"name": "features", "dtype": "float32", "shape": ["B", height, width, synth.feat_num],
                       "meaning": "every pixel's style: its instance's feature vector (style_features builds it)"})
    if synth.z_dim:
        inputs.append({"name": "noise", "dtype": "float32", "shape": ["B", height, width, synth.z_dim],
                       "meaning": "G's 3D noise; a picture's z ~ N(0, I) at every pixel as synthesize draws it "
                                  "(other values in a region restyle it)"})
    photo_dtype = "uint16" if synth.maps.bits == 16 else "uint8"
    return {"inputs": inputs, "outputs": [{"name": "photo", "dtype": photo_dtype,
                                           "shape": ["B", height, width, int(data.output_nc)]}]}


def _check_size(synth: Synthesizer, height: int, width: int):
    d = synth.maps.divisor
    if height < d or width < d or height % d or width % d:
        raise ExportError(f"--height {height} --width {width}: both must be positive multiples of {d} for this "
                          f"generator (model.netG={synth.config.model.netG}); try --height {max(d, height // d * d)} "
                          f"--width {max(d, width // d * d)}.")


def _check_platforms(platforms: Sequence[str]):
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad or not platforms:
        raise ExportError(f"--platforms {','.join(platforms)}: {', '.join(bad) or 'none given'} not among "
                          f"{', '.join(PLATFORMS)}; e.g. --platforms cpu,cuda,tpu.")


def program_fn(synth: Synthesizer):
    """The photo program with the synthesizer's weights bound: the signature's inputs, in order."""
    run = synth.program

    def generator(*inputs):
        inputs = list(inputs)
        label = inputs.pop(0)
        inst = inputs.pop(0) if synth.maps.use_instance else None
        features = inputs.pop(0) if synth.has_encoder else None
        noise = inputs.pop(0) if synth.z_dim else None
        return run(synth.g_vars, label, inst, features, noise)

    return generator


def _specs(sig: dict, batch):
    return [jax.ShapeDtypeStruct(tuple(batch if d == "B" else d for d in i["shape"]), jnp.dtype(i["dtype"]))
            for i in sig["inputs"]]


def export_stablehlo(synth: Synthesizer, height: int, width: int, platforms=DEFAULT_PLATFORMS) -> jax_export.Exported:
    """The photo program lowered for `platforms`, batch size symbolic."""
    _check_size(synth, height, width)
    _check_platforms(platforms)
    (batch,) = jax_export.symbolic_shape("B")
    return jax_export.export(jax.jit(program_fn(synth)), platforms=tuple(platforms))(
        *_specs(signature(synth, height, width), batch))


def export_onnx(synth: Synthesizer, height: int, width: int):
    """The photo program as an ONNX model (jax2onnx), batch size dynamic."""
    _check_size(synth, height, width)
    try:
        from jax2onnx import to_onnx
    except ImportError:
        raise ExportError("--format onnx needs jax2onnx and onnxruntime: pip install '.[onnx]' (or pip install "
                          "jax2onnx onnx onnxruntime).") from None
    sig = signature(synth, height, width)
    plugins = logging.getLogger("jax2onnx.plugins.plugin_system")
    level = plugins.level
    plugins.setLevel(logging.ERROR)  # its example plugins for other libraries (equinox, dm-pix) need not load
    try:
        with conv.lax_ops():  # one form of every conv: ONNX has no platform switch
            return to_onnx(program_fn(synth), inputs=_specs(sig, "B"), model_name="pix2pixhd_generator",
                           input_names=[i["name"] for i in sig["inputs"]],
                           output_names=[o["name"] for o in sig["outputs"]])
    finally:
        plugins.setLevel(level)


def check_onnx(path: str, synth: Synthesizer, sig: dict, seed: int = 0):
    """Run the ONNX model once with onnxruntime on random inputs of batch 2; its photo must agree with
    the synthesizer's (within a level or two: another runtime's float rounding)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = example_inputs(synth, sig, batch=2, seed=seed)
    got = session.run(["photo"], inputs)[0]
    want = np.asarray(jax.jit(program_fn(synth))(*inputs.values()))
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    if got.shape != want.shape or diff.max() > 8 or (diff > 1).mean() > 1e-3:
        raise ExportError(f"{path}: onnxruntime's photo differs from the JAX program's (max {int(diff.max())} "
                          f"levels, {float((diff > 1).mean()):.2%} of values by more than one); the export is not "
                          "trustworthy here.")
    return {"max_level_difference": int(diff.max()), "fraction_differing": float((diff > 0).mean())}


def example_inputs(synth: Synthesizer, sig: dict, batch: int = 1, seed: int = 0) -> dict:
    """Random inputs that fit the signature: block label maps (8x8 blocks, an object per block:
    data/synthetic/blocks.py), random label images and features."""
    rng = np.random.default_rng(seed)
    h, w = sig["inputs"][0]["shape"][1:3]
    grid = rng.integers(0, max(synth.maps.label_nc, 1), (batch,) + grid_shape(h, w, 8))
    label, inst = block_maps(grid, h, w, 8)
    out = {}
    for spec in sig["inputs"]:
        shape = [batch if d == "B" else d for d in spec["shape"]]
        if spec["name"] == "label_ids":
            out["label_ids"] = label.astype(np.int32)
        elif spec["name"] == "inst_ids":
            out["inst_ids"] = inst.astype(np.int32)
        elif spec["name"] == "label_rgb":
            out[spec["name"]] = rng.integers(0, 256, shape).astype(np.uint8)
        elif spec["name"] == "noise":
            out["noise"] = rng.standard_normal(shape, dtype=np.float32)
        else:
            out[spec["name"]] = rng.uniform(-1, 1, shape).astype(np.float32)
    return out


def style_features(synth: Synthesizer, label: np.ndarray, inst: Optional[np.ndarray] = None, styles=None,
                   seed: int = 0, sample: int = 0) -> np.ndarray:
    """The `features` input for one label map (H, W): every instance's style from `styles` ({instance
    id: cluster index | vector}, e.g. a styles JSON's entry), the rest drawn from the clusters as
    synthesize draws them. Returns (H, W, feat_num) float32."""
    if not synth.has_encoder:
        raise ExportError("this model has no feature encoder: its program takes no features input.")
    return synth.program_arrays([label], [inst], [styles], seed, sample)[2][0]


def program_inputs(synth: Synthesizer, labels, insts=None, styles=None, seed: int = 0, sample: int = 0,
                   resize: str = "config") -> dict:
    """The program's inputs (by the signature's names) for label maps (H, W) of one size (RGB
    (H, W, 3) when label_nc == 0), as `synthesize` prepares them: resize 'config' scales them as
    the reference's test.py does for the model's config (maps.prepare), 'none' leaves them (then
    the size must be the exported one); then Synthesizer.program_arrays, as synthesis: instance
    maps default to the label ids; features (with the encoder) come from `styles` (one
    {instance id: cluster index | vector} per map) or the clusters; noise (3D noise) is
    Synthesizer.program_noise's at every pixel (`styles` restyle objects with their own)."""
    insts = list(insts) if insts is not None else [None] * len(labels)
    if resize == "config":
        labels, insts = zip(*[synth.maps.prepare(label, inst)[:2] for label, inst in zip(labels, insts)])
    label, inst, features = synth.program_arrays(labels, insts, styles, seed, sample)
    inputs = {"label_ids": label} if synth.maps.label_nc else {"label_rgb": label.astype(np.uint8)}
    if synth.maps.use_instance:
        inputs["inst_ids"] = inst
    if synth.has_encoder:
        inputs["features"] = features
    if synth.z_dim:
        noise = synth.program_noise(inst, styles, seed, sample)
        if noise.ndim == 2:
            noise = np.broadcast_to(noise[:, None, None, :], inst.shape + (synth.z_dim,))
        inputs["noise"] = np.ascontiguousarray(noise)
    return inputs


def export(workdir: str, out: str, fmt: str, height: int, width: int, platforms=DEFAULT_PLATFORMS,
           dtype: str = "float32", clusters: Optional[str] = None) -> dict:
    """Write OUT/generator.{jax,onnx} and OUT/signature.json for the workdir's newest generator."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if fmt == "onnx" and dtype not in ONNX_DTYPES:
        raise ExportError(f"--format onnx --dtype {dtype}: ONNX Runtime runs {' or '.join(ONNX_DTYPES)}; use one of "
                          "them, or --format stablehlo for bfloat16.")
    _check_platforms(platforms)
    atomic.output_folder(out)
    synth = Synthesizer.from_workdir(workdir, clusters, dtype=dtype)
    _check_size(synth, height, width)
    sig = signature(synth, height, width)
    start = time.time()
    path = os.path.join(out, ARTIFACTS[fmt])
    report = {}
    if fmt == "stablehlo":
        exported = export_stablehlo(synth, height, width, platforms)
        atomic.write_bytes(path, bytes(exported.serialize()))
        platforms = list(exported.platforms)
    else:
        atomic.write_bytes(path, export_onnx(synth, height, width).SerializeToString())
        report = check_onnx(path, synth, sig)
        platforms = ["onnx"]
    config = synth.config
    step = checkpoint.latest_step(workdir, "state")
    step = checkpoint.latest_step(workdir, "models") if step is None else step
    sig.update({
        "format": SIGNATURE_FORMAT, "artifact": os.path.basename(path), "artifact_format": fmt,
        "platforms": platforms, "dtype": dtype, "height": height, "width": width,
        "label_nc": synth.maps.label_nc, "feat_num": synth.feat_num, "z_dim": synth.z_dim,
        "size_divisor": synth.maps.divisor,
        "workdir": os.path.abspath(workdir), "step": step, "seconds": round(time.time() - start, 2),
        "config": checkpoint.config_dict(config),
    })
    if report:
        sig["onnxruntime_check"] = report
    atomic.write_text(os.path.join(out, SIGNATURE_FILE), json.dumps(sig, indent=2))
    return sig
