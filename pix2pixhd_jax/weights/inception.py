"""Weights for the FID Inception (``models.inception.FIDInceptionV3``): readers and the converter.

No weights ship with the project and nothing is downloaded; FID and KID need the user to
name one of these files:

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (``.pth``/``.pt``; needs torch
  to read). Keys are ``{module}.conv.weight`` (OIHW) and ``{module}.bn.{weight, bias,
  running_mean, running_var}``; ``fc.*``, ``AuxLogits.*`` and ``*.num_batches_tracked``
  are not used by pool3 and are skipped.
* a ``.npz`` of the same tensors under the same keys, written by
  ``pix2pixhd-jax convert-inception --pth PTH --out NPZ`` (torch needed once, for the
  conversion; reading the .npz needs only numpy);
* jax-fid's pickle (``inception_v3_weights_fid.pickle``): nested dicts
  ``{module: {branch: {'conv': {'kernel' (HWIO)}, 'bn': {'scale', 'bias', 'mean', 'var'}}}}``
  (the layout read by github.com/matthias-wright/jax-fid; its unused conv ``bias`` entries
  are skipped), or a pickled flax variables dict ``{'params', 'batch_stats'}`` with this
  project's names. Pickles are read with an unpickler that builds only dicts, lists and
  numpy arrays, so a pickle cannot run code.

torch is imported only when a .pth is read.
"""

import functools
import io
import os
import pickle
from typing import Any, Dict

import numpy as np

from pix2pixhd_jax import atomic
from pix2pixhd_jax.errors import InceptionWeightsError, InceptionWeightsNotFoundError
from pix2pixhd_jax.models.inception import FIDInceptionV3, expected_variables
from pix2pixhd_jax.weights.files import flatten, npz_arrays, strip_module_prefix, torch_state_dict, unflatten

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FORMATS = (".pth", ".pt", ".npz", ".pickle", ".pkl")
SKIPPED_PREFIXES = ("fc.", "AuxLogits.")
CONVERT_COMMAND = "pix2pixhd-jax convert-inception --pth {pth} --out fid_inception.npz"
HOW_TO_GET = (
    f"FID/KID need pytorch-fid's FID Inception weights {FID_WEIGHTS_FILE} ({FID_WEIGHTS_URL}); "
    "none ship with this project and none are downloaded. Give `pix2pixhd-jax evaluate` that file with "
    f"--inception FILE, or a .npz converted from it with `{CONVERT_COMMAND.format(pth=FID_WEIGHTS_FILE)}`, or "
    "jax-fid's inception_v3_weights_fid.pickle"
)

# torch batch-norm names -> (flax collection, flax name)
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def missing_weights_message() -> str:
    """What to tell the user when FID/KID are skipped for want of the weights file."""
    return f"FID and KID skipped: no Inception weights file given. {HOW_TO_GET}."


@functools.lru_cache(maxsize=1)
def state_dict_slots():
    """{torch key: (flax variables path, expected shape in the torch layout)} for every tensor pool3 uses."""
    variables = expected_variables()
    flat = {**flatten({"params": variables["params"]}), **flatten({"batch_stats": variables["batch_stats"]})}
    slots = {}
    for path, leaf in flat.items():
        collection, modules, name = path[0], path[1:-2], path[-2:]
        prefix = ".".join(modules)
        if name == ("conv", "kernel"):
            h, w, i, o = leaf.shape
            slots[f"{prefix}.conv.weight"] = (path, (o, i, h, w))
        else:
            torch_name = next(t for t, (c, f) in _BN.items() if (c, f) == (collection, name[1]))
            slots[f"{prefix}.bn.{torch_name}"] = (path, tuple(leaf.shape))
    return slots


def variables_from_state_dict(state: Dict[str, Any], path: str = "<state dict>"):
    """pytorch-fid's state dict (torch keys and layouts, numpy arrays) -> flax variables."""
    state = strip_module_prefix(state)
    flat = {}
    for key, (target, shape) in state_dict_slots().items():
        if key not in state:
            missing = sum(k not in state for k in state_dict_slots())
            raise InceptionWeightsError(
                f"{path}: key {key!r} is missing ({missing} of the {len(state_dict_slots())} keys pool3 needs are; found "
                f"{len(state)} keys, e.g. {sorted(state)[:4]}); this is not pytorch-fid's FID Inception state "
                f"dict. {HOW_TO_GET}.")
        array = np.asarray(state[key], np.float32)
        if array.shape != shape:
            raise InceptionWeightsError(f"{path}: {key} has shape {array.shape}, expected {shape}; this is not "
                                        f"pytorch-fid's FID Inception state dict. {HOW_TO_GET}.")
        flat[target] = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array
    extra = [k for k in state if k not in state_dict_slots() and not k.startswith(SKIPPED_PREFIXES)
             and not k.endswith(".num_batches_tracked")]
    if extra:
        raise InceptionWeightsError(f"{path}: unexpected key {extra[0]!r} ({len(extra)} unexpected in all); this "
                                    f"is not pytorch-fid's FID Inception state dict. {HOW_TO_GET}.")
    return unflatten(flat)


def variables_from_jax_tree(tree: Dict[str, Any], path: str = "<pickle>"):
    """jax-fid's nested dict, or flax variables with this project's names -> flax variables."""
    if "params" in tree and "batch_stats" in tree:
        tree = _merge_collections(tree)
    flat = {}
    for key, (target, shape) in state_dict_slots().items():
        entry = target[1:]  # e.g. ('Mixed_5b', 'branch1x1', 'bn', 'mean')
        node = tree
        for k in entry:
            if not hasattr(node, "items") or k not in node:
                raise InceptionWeightsError(
                    f"{path}: entry {'/'.join(entry)} is missing; expected jax-fid's FID Inception pickle "
                    f"(for {key}). {HOW_TO_GET}.")
            node = node[k]
        array = np.asarray(node, np.float32)
        want = (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
        if array.shape != want:
            raise InceptionWeightsError(f"{path}: {'/'.join(entry)} has shape {array.shape}, expected {want}. "
                                        f"{HOW_TO_GET}.")
        flat[target] = array
    return unflatten(flat)


def _merge_collections(variables):
    """{'params': {...conv/kernel, bn/scale, bn/bias}, 'batch_stats': {...bn/mean, bn/var}} -> one tree."""
    flat = flatten(dict(variables["params"]))
    flat.update(flatten(dict(variables["batch_stats"])))
    return unflatten(flat)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Builds dicts, lists, numbers and numpy arrays, and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
        ("flax.core.frozen_dict", "FrozenDict"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only dicts and numpy arrays are read)")
        return super().find_class(module, name)


def _read_pickle(path):
    try:
        with open(path, "rb") as f:
            tree = _ArraysOnlyUnpickler(io.BytesIO(f.read())).load()
    except Exception as e:  # noqa: BLE001 - any read failure becomes a message naming the file
        raise InceptionWeightsError(f"{path}: cannot read it as a pickle of numpy arrays ({type(e).__name__}: "
                                    f"{e}). {HOW_TO_GET}.") from e
    if not hasattr(tree, "items"):
        raise InceptionWeightsError(f"{path}: holds a {type(tree).__name__}, not a dict of weights. {HOW_TO_GET}.")
    return tree


def _read_torch(path):
    return torch_state_dict(
        path, InceptionWeightsError,
        "reading a PyTorch .pth needs torch (`pip install torch`, the CPU build is enough), or convert it once "
        f"where torch is installed: `{CONVERT_COMMAND.format(pth=path)}`, and pass the .npz instead.",
        f"{HOW_TO_GET}.")


def _check_path(path, what="FID Inception weights file"):
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise InceptionWeightsError(f"{path}: unknown format {ext or '(no extension)'!r} for the {what}; "
                                    f"expected one of {', '.join(FORMATS)}. {HOW_TO_GET}.")
    if not os.path.isfile(path):
        raise InceptionWeightsNotFoundError(f"{what} {path} does not exist. {HOW_TO_GET}.")
    return ext


def load_inception_variables(path) -> Dict[str, Any]:
    """Read any supported file (see the module docstring) into FIDInceptionV3's variables."""
    path = os.fspath(path)
    ext = _check_path(path)
    if ext in (".pickle", ".pkl"):
        return variables_from_jax_tree(_read_pickle(path), path)
    state = (_read_torch(path) if ext in (".pth", ".pt")
             else npz_arrays(path, InceptionWeightsError, "FID Inception weights", f"{HOW_TO_GET}."))
    return variables_from_state_dict(state, path)


def load_fid_inception(path, resize_input: bool = True, normalize_input: bool = True):
    """(FIDInceptionV3 with pytorch-fid's preprocessing, its variables) from a weights file."""
    module = FIDInceptionV3(resize_input=resize_input, normalize_input=normalize_input)
    return module, load_inception_variables(path)


def convert_fid_inception(pth_path, out_path) -> str:
    """pytorch-fid's .pth -> .npz of the tensors pool3 uses, under the same keys (needs torch)."""
    pth_path, out_path = os.fspath(pth_path), os.fspath(out_path)
    if not out_path.lower().endswith(".npz"):
        raise InceptionWeightsError(f"convert: --out {out_path} should end in .npz")
    _check_path(pth_path)
    state = _read_torch(pth_path)
    variables_from_state_dict(state, pth_path)  # validate before writing anything
    arrays = {k: np.asarray(state[k], np.float32) for k in state_dict_slots()}
    return atomic.write_npz(out_path, arrays)


def convert_fid_inception_main(pth, out) -> str:
    """Converts; returns a one-line message for the user."""
    out = convert_fid_inception(pth, out)
    return f"FID Inception weights {pth} converted to {os.path.abspath(out)} (torch-free to read)."

