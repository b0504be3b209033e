"""`pix2pixhd-jax synthesize`: label map files or folders in, PNG photos out.

--num-samples K writes K pictures per label map (X_sample00.png ...): another noise vector each
for a generator with 3D noise (OASIS), other random cluster styles for the feature encoder, all
drawn from --seed.

Styles (models trained with the feature encoder):
  random           every instance draws a k-means style of its class (from --seed)
  encode:PATH      E's features of real photos: one photo, or a folder paired with the
                   label maps by scene name (aachen_000000_000019_leftImg8bit.png pairs
                   with aachen_000000_000019_gtFine_labelIds.png)
  FILE.json        {"<instance id>": <cluster index> | [feature, ...], ...} for every label
                   map, or {"<scene name>": {"<instance id>": ...}, ...} per label map;
                   instances not named draw a random style.
"""

import collections
import json
import logging
import os
from typing import Optional

import numpy as np
from tqdm import tqdm

from pix2pixhd_jax import atomic
from pix2pixhd_jax.data import decode, visualize
from pix2pixhd_jax.data.readers import IMAGE_EXTENSIONS, list_images, scene_key
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.inference.synthesis import Synthesizer


def _files(path: str, what: str, flag: str) -> list:
    if os.path.isdir(path):
        return list_images(path, what, flag)
    if not os.path.isfile(path):
        raise UserError(f"{flag}{'' if flag.endswith(':') else ' '}{path}: no such file or folder (the {what}).")
    return [path]


def _read(path: str):
    with open(path, "rb") as f:
        return f.read()


def _pair_by_scene(labels: list, others: list, what: str) -> dict:
    """{label file: partner file} by scene name (a single partner goes with a single label map)."""
    if len(others) == 1 and len(labels) == 1:
        return {labels[0]: others[0]}
    by_key = {scene_key(f): f for f in others}
    out = {}
    for f in labels:
        partner = by_key.get(scene_key(f))
        if partner is None:
            raise UserError(f"{f}: no {what} with the scene name {scene_key(f)!r} among the {len(others)} given "
                            f"(e.g. {others[0]}). Name them alike, e.g. X_label.png and X_inst.png.")
        out[f] = partner
    return out


def _parse_style_map(obj, where: str) -> dict:
    out = {}
    for key, value in obj.items():
        try:
            inst = int(key)
        except ValueError:
            raise UserError(f"{where}: key {key!r} is not an instance id.") from None
        if isinstance(value, bool) or not isinstance(value, (int, list)):
            raise UserError(f"{where}: instance {inst}: {value!r} is neither an index (a cluster, or a draw of the "
                            "noise) nor a list of numbers (features, or a noise vector).")
        if isinstance(value, int) and value < 0:
            raise UserError(f"{where}: instance {inst}: index {value} is negative; give an index from 0.")
        if isinstance(value, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in value):
            raise UserError(f"{where}: instance {inst}: the feature list {value!r} must hold numbers.")
        out[inst] = value
    return out


def load_style_json(path: str) -> dict:
    """{None: styles for every label map} or {scene name: styles}, styles = {instance id: index | vector}."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read the style file ({e}). Expected JSON such as "
                        '{"26001": 3, "26002": [0.1, -0.2, 0.4]}.') from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: the style file holds a {type(obj).__name__}, expected a JSON object.")
    if all(isinstance(v, dict) for v in obj.values()) and obj:
        return {name: _parse_style_map(v, f"{path} [{name}]") for name, v in obj.items()}
    return {None: _parse_style_map(obj, path)}


def _check_vector_lengths(style_json: dict, path: str, synth: Synthesizer):
    """Every vector of a style file as long as what the model reads: E's features, or G's noise."""
    size, what = ((synth.feat_num, "features (model.feat_num)") if synth.has_encoder else
                  (synth.z_dim, "noise values (model.z_dim)"))
    for scene, styles in style_json.items():
        for inst, value in styles.items():
            if isinstance(value, list) and len(value) != size:
                where = f"{path} [{scene}]" if scene is not None else path
                raise UserError(f"{where}: instance {inst}: a vector of {len(value)} values; this model reads {size} "
                                f"{what}: give {size} numbers, or an index.")


RESIZE_MODES = ("config", "none")


def synthesize_files(synth: Synthesizer, label: str, out: str, inst: Optional[str] = None, style: str = "random",
                     seed: int = 0, num_samples: int = 1, batch_size: int = 4, progress: bool = True,
                     resize: str = "config", unknown_label: Optional[int] = None):
    """Synthesize every label map under `label` into `out`; returns the written paths.

    resize 'config': maps (with their instance maps and style photos) are scaled as the reference's
    test.py scales them for the model's config, and photos written at that size; 'none': fed as
    they are (sizes off the generator's factor are padded and cropped back)."""
    if resize not in RESIZE_MODES:
        raise UserError(f"--resize {resize!r}: expected one of {', '.join(RESIZE_MODES)}.")
    labels = _files(label, "label maps", "--label")
    insts = _pair_by_scene(labels, _files(inst, "instance maps", "--inst"), "instance map") if inst else {}
    photos, style_json = {}, {}
    if style != "random":
        if not synth.has_encoder and not (synth.z_dim and style.endswith(".json")):
            raise UserError(f"--style {style}: this model has no feature encoder; styles apply only to models trained "
                            "with model.instance_feat or model.label_feat, and a STYLES.json (a draw index or a noise "
                            "vector per object) to models with 3D noise (model.z_dim > 0).")
        if style.startswith("encode:"):
            photos = _pair_by_scene(labels, _files(style[len("encode:"):], "style photos", "--style encode:"), "style photo")
        elif style.endswith(".json"):
            style_json = load_style_json(style)
            _check_vector_lengths(style_json, style, synth)
        else:
            raise UserError(f"--style {style!r}: expected 'random', 'encode:PHOTO_OR_FOLDER' or a .json file.")
    if num_samples < 1:
        raise UserError(f"--num-samples {num_samples}: must be at least 1.")
    if num_samples > 1 and not synth.random_samples(style):
        raise UserError(f"--num-samples {num_samples}: this model draws nothing at random (no 3D noise, no random "
                        "cluster styles), so every sample would be the same picture; use --num-samples 1, or a model "
                        "with 3D noise (model.netG=spade, model.z_dim > 0: configs/oasis_*.py).")
    atomic.output_folder(out)

    maps = synth.maps
    unknown = maps.unknown_label
    if unknown_label is not None:
        if not 0 <= unknown_label < max(maps.label_nc, 1):
            raise UserError(f"--unknown-label {unknown_label}: not one of the model's classes 0..{maps.label_nc - 1}.")
        unknown = unknown_label
    groups = collections.OrderedDict()  # one jitted program per size
    for f in labels:
        lab = decode.decode_label(_read(f), f, maps.label_nc, unknown, maps.input_nc, for_model=True)
        lab = np.asarray(lab) if maps.label_nc == 0 else lab
        ins = decode.decode_instances(_read(insts[f]), insts[f]) if f in insts else None
        if ins is not None and ins.shape != lab.shape[:2]:
            raise UserError(f"{insts[f]}: {ins.shape[1]}x{ins.shape[0]}, but its label map {f} is "
                            f"{lab.shape[1]}x{lab.shape[0]}; they must be the same size.")
        styles = style_json.get(None, style_json.get(scene_key(f)))
        photo = (np.asarray(decode.decode_photo(_read(photos[f]), photos[f], maps.channels, maps.bits)) if f in photos
                 else None)
        if photo is not None and photo.shape[:2] != lab.shape[:2]:
            raise UserError(f"{photos[f]}: {photo.shape[1]}x{photo.shape[0]}, but the label map {f} is "
                            f"{lab.shape[1]}x{lab.shape[0]}; encode a photo of the same size.")
        if resize == "config":
            lab, ins, photo = maps.prepare(lab, ins, photo, where=f)
        if photo is not None:
            styles = synth.encode_styles(photo, lab, ins)
        groups.setdefault(lab.shape, []).append((f, lab, ins, styles))

    if maps.use_instance and not inst:
        logging.warning("the model was trained with instance maps (data.use_instance) and no --inst was given: each "
                        "class's region is taken as one object, so touching objects of a class blur into one; give "
                        "--inst (e.g. from `pix2pixhd-jax make-instances`) for their boundaries.")
    written = []
    bar = tqdm(total=len(labels) * num_samples, disable=not progress, desc="synthesizing", unit="image")
    for items in groups.values():
        size = min(batch_size, len(items))
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            padded = chunk + [chunk[-1]] * (size - len(chunk))  # the last batch keeps the compiled shape
            for k in range(num_samples):
                photos_out = synth.synthesize_batch([c[1] for c in padded], [c[2] for c in padded],
                                                    [c[3] for c in padded], seed=seed, sample=k)
                for (f, *_), img in zip(chunk, photos_out):
                    suffix = "synthesized" if num_samples == 1 else f"sample{k:02d}"
                    path = os.path.join(out, f"{scene_key(f)}_{suffix}.png")
                    visualize.save_png(path, img)
                    written.append(path)
                bar.update(len(chunk))
    bar.close()
    return written


__all__ = ["synthesize_files", "load_style_json", "IMAGE_EXTENSIONS", "RESIZE_MODES"]
