"""Files written whole or not at all: a temporary file in the same folder, renamed into place.

A crash, a full disk or a killed job never leaves a half-written file under the final name
(and never a stray temporary file: it is removed on failure)."""

import json
import os

import numpy as np

from pix2pixhd_jax.errors import OutputError


def _replace_via_temp(path: str, write, suffix: str = ""):
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_npz(path: str, arrays: dict) -> str:
    # np.savez appends .npz to names without it: the temporary name carries it already.
    return _replace_via_temp(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")


def write_text(path: str, text: str) -> str:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return _replace_via_temp(path, write)


def write_bytes(path: str, data: bytes) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)

    return _replace_via_temp(path, write)


def write_json(path: str, obj, indent: int = 2) -> str:
    return write_text(path, json.dumps(obj, indent=indent))


def write_png(path: str, image, **save_options) -> str:
    """A PIL image as a PNG file (save_options: Pillow's, e.g. compress_level)."""
    return _replace_via_temp(path, lambda tmp: image.save(tmp, format="PNG", **save_options))


def _blocking_file(path: str):
    """The existing file (not folder) at `path` or above it, if any."""
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path) and not os.path.isdir(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def output_folder(path: str, flag: str = "--out") -> str:
    """Make the folder outputs go into (and its parents); an OutputError naming `flag` and the
    fix where a file is in the way or nothing can be written there."""
    blocker = _blocking_file(path)
    if blocker is not None:
        what = "is a file" if blocker == os.path.abspath(path) else f"cannot be made: {blocker} is a file"
        raise OutputError(f"{flag} {path}: {what}, and the outputs go into a folder; give a folder (new or "
                          "existing), or move the file away.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{flag} {path}: the folder cannot be made ({e.strerror or e}); give a folder you can "
                          "write to.") from None
    return os.path.abspath(path)


def output_file(path: str, flag: str = "--out", example: str = "out.json") -> str:
    """Check that a file can be written at `path` (its folder made): an OutputError naming `flag`
    where a folder stands there or a file stands where its folder goes."""
    if os.path.isdir(path):
        raise OutputError(f"{flag} {path}: is a folder, and a file goes there; give a file name, e.g. "
                          f"{os.path.join(path, example)}.")
    output_folder(os.path.dirname(os.path.abspath(path)), flag)
    return os.path.abspath(path)
