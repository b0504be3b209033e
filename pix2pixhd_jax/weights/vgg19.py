"""VGG19 weight files for the perceptual loss: readers and the converter.

No weights ship with the project and nothing is downloaded. The user supplies one of:

* torchvision's ``vgg19-dcbb9e9d.pth`` (``.pth``/``.pt``; needs PyTorch to read),
* the same tensors as ``.npz`` (``pix2pixhd-jax convert-vgg19`` writes it, torch-free to read)
  or ``.safetensors`` (needs the ``safetensors`` package),
* Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (needs h5py). Those weights
  expect Keras' "caffe" preprocessing, which the module then applies itself.

torch and safetensors are imported only when such a file is read.
"""

import os
from typing import Any, Dict, Tuple

import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax import atomic
from pix2pixhd_jax.errors import VGGWeightsError, VGGWeightsNotFoundError
from pix2pixhd_jax.models.vgg19 import CONV_INDICES, VGG19Features, conv_specs
from pix2pixhd_jax.weights.files import npz_arrays, safetensors_arrays, torch_state_dict

# Keras' layer names for VGG19's convs, in torchvision's order.
KERAS_LAYER_NAMES = (
    "block1_conv1", "block1_conv2",
    "block2_conv1", "block2_conv2",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4",
    "block5_conv1",
)

TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
KERAS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
             "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")

HOW_TO_GET = (
    "Use torchvision's VGG19 weights file vgg19-dcbb9e9d.pth (torchvision model zoo, "
    f"{TORCHVISION_URL}), a .npz converted from it with `pix2pixhd-jax convert-vgg19 --pth "
    "vgg19-dcbb9e9d.pth --out vgg19.npz`, or Keras' VGG19 notop weights "
    f"vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 ({KERAS_URL})"
)


def _check_shape(path, key, array, expected, layout):
    if tuple(array.shape) != tuple(expected):
        raise VGGWeightsError(
            f"{path}: {key} has shape {tuple(array.shape)}, expected {tuple(expected)} "
            f"({layout}); this is not VGG19's weights file. {HOW_TO_GET}."
        )


def _params(kernels: Dict[int, Tuple[np.ndarray, np.ndarray]]):
    """{torchvision index: (HWIO kernel, bias)} -> flax variables of VGG19Features."""
    return {"params": {
        f"features_{i}": {"conv": {"kernel": jnp.asarray(k, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}}
        for i, (k, b) in kernels.items()
    }}


def variables_from_state_dict(state: Dict[str, Any], path: str = "<state dict>"):
    """torchvision-layout tensors (``features.{i}.weight`` OIHW, ``features.{i}.bias``) -> variables.

    Keys outside features[0:30] (``classifier.*``, ``features.30`` and on) are ignored. A state
    dict of ``vgg19().features`` alone (keys ``{i}.weight``) is accepted too.
    """
    state = dict(state)
    if not any(str(k).startswith("features.") for k in state) and any(str(k) == "0.weight" for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    kernels = {}
    for i, cin, cout in conv_specs():
        wkey, bkey = f"features.{i}.weight", f"features.{i}.bias"
        for key in (wkey, bkey):
            if key not in state:
                found = sorted(str(k) for k in state)[:6]
                raise VGGWeightsError(
                    f"{path}: key {key!r} is missing (found {len(state)} keys, e.g. {found}); expected "
                    f"torchvision's VGG19 layout, keys features.{{{','.join(map(str, CONV_INDICES))}}}"
                    f".weight/.bias. {HOW_TO_GET}."
                )
        w = np.asarray(state[wkey], np.float32)
        b = np.asarray(state[bkey], np.float32)
        _check_shape(path, wkey, w, (cout, cin, 3, 3), "torchvision OIHW")
        _check_shape(path, bkey, b, (cout,), "bias")
        kernels[i] = (w.transpose(2, 3, 1, 0), b)  # OIHW -> HWIO
    return _params(kernels)


def _torch_state_dict(path):
    return torch_state_dict(
        path, VGGWeightsError,
        f"reading a PyTorch .pth needs PyTorch: `pip install torch` (the CPU build is enough), or convert it "
        f"once on a machine that has torch with `pix2pixhd-jax convert-vgg19 --pth {path} --out vgg19.npz` and "
        "pass the .npz instead.", f"{HOW_TO_GET}.")


def _find_group(h5file, name):
    """The first group named `name` anywhere in the file (Keras nests under model_weights/ sometimes)."""
    import h5py

    if name in h5file and isinstance(h5file[name], h5py.Group):
        return h5file[name]
    found = []

    def visit(obj_name, obj):
        if isinstance(obj, h5py.Group) and obj_name.split("/")[-1] == name:
            found.append(obj)
            return True
        return None

    h5file.visititems(visit)
    return found[0] if found else None


def _datasets(group):
    import h5py

    out = []

    def visit(obj_name, obj):
        if isinstance(obj, h5py.Dataset):
            out.append((f"{group.name}/{obj_name}", obj))

    group.visititems(visit)
    return out


def variables_from_keras_h5(path):
    """Keras' VGG19 (notop) .h5 -> variables (use with preprocess='caffe')."""
    try:
        import h5py
    except ImportError:
        raise VGGWeightsError(f"{path}: reading Keras .h5 weights needs h5py: `pip install h5py`.") from None
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001
        raise VGGWeightsError(f"{path}: cannot open it as HDF5 ({type(e).__name__}: {e}). {HOW_TO_GET}.") from e
    kernels = {}
    with f:
        for name, (i, cin, cout) in zip(KERAS_LAYER_NAMES, conv_specs()):
            group = _find_group(f, name)
            if group is None:
                raise VGGWeightsError(
                    f"{path}: layer group {name!r} is missing; expected Keras' VGG19 layer groups "
                    f"{KERAS_LAYER_NAMES[0]} ... {KERAS_LAYER_NAMES[-1]}. {HOW_TO_GET}."
                )
            sets = _datasets(group)
            w = [(n, d) for n, d in sets if d.ndim == 4]
            b = [(n, d) for n, d in sets if d.ndim == 1]
            if len(w) != 1 or len(b) != 1:
                shapes = {n: tuple(d.shape) for n, d in sets}
                raise VGGWeightsError(
                    f"{path}: layer group {name!r} should hold one 4-D kernel and one 1-D bias, "
                    f"found {shapes}. {HOW_TO_GET}."
                )
            (wname, wd), (bname, bd) = w[0], b[0]
            wk, bk = np.asarray(wd[()], np.float32), np.asarray(bd[()], np.float32)
            _check_shape(path, wname, wk, (3, 3, cin, cout), "Keras HWIO kernel")
            _check_shape(path, bname, bk, (cout,), "bias")
            kernels[i] = (wk, bk)
    return _params(kernels)


def load_vgg19_weights(path: str):
    """Read VGG19 weights; returns (variables for VGG19Features, preprocess mode).

    .pth/.pt (torchvision, needs torch), .npz (converted), .safetensors: preprocess "none".
    .h5 (Keras VGG19 notop): preprocess "caffe".
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    known = (".pth", ".pt", ".npz", ".safetensors", ".h5")
    if ext not in known:
        raise VGGWeightsError(
            f"{path}: unknown VGG19 weights format {ext or '(no extension)'!r}; expected one of "
            f"{', '.join(known)}. {HOW_TO_GET}."
        )
    if not os.path.isfile(path):
        raise VGGWeightsNotFoundError(
            f"VGG19 weights file {path} does not exist. Pass the path of an existing file with "
            f"--config.loss.vgg_weights=PATH, or turn the VGG loss off with "
            f"--config.loss.no_vgg_loss=true. {HOW_TO_GET}."
        )
    if ext == ".h5":
        return variables_from_keras_h5(path), "caffe"
    if ext in (".pth", ".pt"):
        state = _torch_state_dict(path)
    elif ext == ".npz":
        state = npz_arrays(path, VGGWeightsError, "VGG19 weights", f"{HOW_TO_GET}.")
    else:
        state = safetensors_arrays(
            path, VGGWeightsError, "reading .safetensors needs the safetensors package: `pip install safetensors`, "
            "or use a .npz (`pix2pixhd-jax convert-vgg19 --pth vgg19-dcbb9e9d.pth --out vgg19.npz`).",
            f"{HOW_TO_GET}.")
    return variables_from_state_dict(state, path), "none"


def load_vgg19(path: str, dtype: Any = jnp.float32, remat: Any = "none"):
    """(VGG19Features with the preprocessing the file needs, its variables)."""
    variables, preprocess = load_vgg19_weights(path)
    return VGG19Features(preprocess=preprocess, remat=remat, dtype=dtype), variables


def missing_weights_error() -> VGGWeightsError:
    """The error for a VGG loss that is on while config.loss.vgg_weights is empty."""
    return VGGWeightsError(
        "The VGG loss is on (config.loss.no_vgg_loss=false) but needs VGG19 weights, and "
        "config.loss.vgg_weights is empty. No VGG19 weights ship with this project and none are "
        f"downloaded. {HOW_TO_GET}. Then pass --config.loss.vgg_weights=PATH, or turn the loss off "
        "with --config.loss.no_vgg_loss=true."
    )


def vgg_from_config(loss_config, dtype: Any = jnp.float32, remat: Any = "none"):
    """(module, variables) for config.loss, or None when the VGG loss is off; `remat` is
    train.remat (the loss's VGG19 passes are part of the train step)."""
    if loss_config.no_vgg_loss:
        return None
    if not loss_config.vgg_weights:
        raise missing_weights_error()
    return load_vgg19(loss_config.vgg_weights, dtype, remat)


def convert_vgg19(pth_path: str, out_path: str) -> str:
    """torchvision .pth -> .npz of the same ``features.*`` tensors (needs torch); returns out_path."""
    pth_path, out_path = os.fspath(pth_path), os.fspath(out_path)
    if not out_path.lower().endswith(".npz"):
        raise VGGWeightsError(f"convert-vgg19: --out {out_path} should end in .npz")
    if not os.path.isfile(pth_path):
        raise VGGWeightsNotFoundError(f"convert-vgg19: {pth_path} does not exist. {HOW_TO_GET}.")
    state = _torch_state_dict(pth_path)
    variables_from_state_dict(state, pth_path)  # validate before writing anything
    arrays = {k: np.asarray(v, np.float32) for k, v in state.items() if str(k).startswith("features.")}
    if not arrays:  # a features-only state dict ("0.weight", ...)
        arrays = {f"features.{k}": np.asarray(v, np.float32) for k, v in state.items()}
    return atomic.write_npz(out_path, arrays)


def convert_vgg19_main(pth: str, out: str) -> str:
    """`pix2pixhd-jax convert-vgg19 --pth ... --out ...`: converts, returns a one-line message."""
    out = convert_vgg19(pth, out)
    n = sum(int(np.prod(s)) for _, cin, cout in conv_specs() for s in ((cout, cin, 3, 3), (cout,)))
    return (f"VGG19 weights {pth} converted to {os.path.abspath(out)} ({n:,} parameters used by the "
            f"VGG loss); pass --config.loss.vgg_weights={out}")

