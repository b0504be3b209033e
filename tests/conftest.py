"""Shared test helpers: small hand-made datasets and the real Cityscapes samples."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CITYSCAPES_SAMPLES = ROOT.parent / "shared" / "data" / "cityscapes_samples"

# Distinct photo colours per label id, so a photo pixel tells which label it came from.
COLOURS = np.random.default_rng(7).integers(0, 256, size=(256, 3)).astype(np.uint8)


def block_example(w=128, h=64, block=16, seed=0, label_nc=35):
    """Label blocks with random ids, instance ids label*1000+block index, photo coloured by label."""
    rng = np.random.default_rng(seed)
    gh, gw = -(-h // block), -(-w // block)
    grid = rng.integers(1, min(label_nc, 34), size=(gh, gw))
    label = np.kron(grid, np.ones((block, block), np.int64))[:h, :w].astype(np.uint8)
    index = np.kron(np.arange(gh * gw).reshape(gh, gw), np.ones((block, block), np.int64))[:h, :w]
    inst = (label.astype(np.int64) * 1000 + index % 1000).astype(np.uint16)
    photo = COLOURS[label]
    return label, inst, photo


def save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def make_aligned(root, phase="train", n=6, w=128, h=64, seed=0, names=None):
    """The reference's aligned folders with n block examples; returns the examples."""
    out = []
    for i in range(n):
        name = names[i] if names else f"scene_{i:03d}"
        label, inst, photo = block_example(w, h, seed=seed * 1000 + i)
        save(f"{root}/{phase}_label/{name}.png", label)
        save(f"{root}/{phase}_inst/{name}.png", inst)
        save(f"{root}/{phase}_img/{name}.png", photo)
        out.append((name, label, inst, photo))
    return out


def load_test_config(*overrides):
    from pix2pixhd_jax.config_loading import load_config

    return load_config(str(ROOT / "configs" / "synthetic_demo.py"), list(overrides))


@pytest.fixture
def cityscapes_samples():
    if not (CITYSCAPES_SAMPLES / "train_label").is_dir():
        pytest.skip(f"the real Cityscapes samples are not at {CITYSCAPES_SAMPLES} (they live in ../shared)")
    return CITYSCAPES_SAMPLES
