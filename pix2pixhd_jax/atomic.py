"""Files written whole or not at all: a temporary file in the same folder, renamed into place.

A crash, a full disk or a killed job never leaves a half-written file under the final name
(and never a stray temporary file: it is removed on failure)."""

import json
import os

import numpy as np


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
