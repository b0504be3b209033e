"""Reading foreign weight files into numpy: PyTorch state dicts, .npz, .safetensors, and the
nested-dict helpers the converters share.

torch and safetensors are optional: they are imported when such a file is read, and a
missing one is an error that says what to install or which converted file to pass instead.
Each reader raises the caller's error type with the caller's hint (where to get the right
file) appended, so a message names the file, what is wrong and the fix.
"""

import os
from typing import Callable, Dict

import numpy as np


def flatten(tree, prefix=()) -> dict:
    """{path tuple: leaf} of a nested dict (or any mapping with .items())."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) or hasattr(v, "items"):
            out.update(flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten(flat: dict) -> dict:
    tree = {}
    for path, value in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return tree


def strip_module_prefix(state: dict) -> dict:
    """Keys saved from nn.DataParallel start with 'module.'."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _numpy(tensor):
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def torch_state_dict(path: str, error: Callable[[str], Exception], no_torch: str, hint: str = "") -> Dict[str, np.ndarray]:
    """A .pth/.pt state dict as numpy arrays (floating tensors as float32). `no_torch` is what to
    say when torch is not installed; `hint` ends every other message."""
    hint = f" {hint}" if hint else ""
    try:
        import torch
    except ImportError:
        raise error(f"{path}: {no_torch}") from None
    if not os.path.isfile(path):
        raise error(f"{path}: file not found.{hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle torch refuses, or not a checkpoint at all
        raise error(f"{path}: cannot read it as a PyTorch state dict ({type(e).__name__}: {e}).{hint}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise error(f"{path}: holds a {type(obj).__name__}, not a state dict.{hint}")
    return {k: _numpy(v) for k, v in obj.items() if hasattr(v, "detach")}


def npz_arrays(path: str, error: Callable[[str], Exception], what: str, hint: str = "") -> Dict[str, np.ndarray]:
    """Every array of a .npz (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as e:  # noqa: BLE001
        raise error(f"{path}: cannot read it as a .npz of {what} ({type(e).__name__}: {e}). {hint}".rstrip()) from None


def safetensors_arrays(path: str, error: Callable[[str], Exception], no_package: str, hint: str = ""):
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise error(f"{path}: {no_package}") from None
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001
        raise error(f"{path}: cannot read it as safetensors ({type(e).__name__}: {e}). {hint}".rstrip()) from None
