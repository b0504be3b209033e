"""Synthesis from label maps with a trained model, loaded once (no TensorFlow here).

`Synthesizer` turns label maps (and instance maps) into photos: G(s) or, with the
feature encoder, G(s, features) where every instance carries a style vector: a
k-means centre of its class (chosen, or drawn at random per instance), a feature
the user gives, or the feature E extracts from a real photo. Inference builds no
gradients and compiles once per input shape. Sizes that are not a multiple of the
generator's factor are padded (edge pixels repeated) and the output cropped back.

Maps come in through `data/label_maps.py` (`Synthesizer.maps`, the model's ModelMaps): its
`prepare` scales inputs as the reference's test.py does for the model's config (a 512p model
given a raw 2048x1024 Cityscapes map works at 1024x512); the synthesize command, the editor and
export's inputs go through it unless told `resize none`. `synthesize` itself takes maps at the
size they are given; `program_arrays` checks them and adds the instance maps and features the
program takes, for synthesis and export alike.

Random styles are drawn per instance from (seed, sample, instance id), so editing one
object never reshuffles the styles of the others. A generator with 3D noise (netG=spade,
model.z_dim > 0: OASIS) reads one noise vector per picture, drawn from (seed, sample) as OASIS
draws it at test time (the same z at every pixel), unless given: every sample of a map is
another picture, and a map's picture does not depend on the maps synthesized beside it. Its
styles restyle objects: an object given a style (a draw index, or z itself) reads its own z
over its pixels (drawn from (seed, sample, instance id, index)), the rest of the picture the
picture's.

`photo_program` is the one program every path runs (synthesize, the editor, export): label ids
(or uint8 RGB labels), instance ids, features and noise in, uint8 photos out. `dtype` runs it in
bfloat16 or float16: the conv parameters are cast once, normalisation stays in float32.
"""

import functools
import os
from typing import Dict, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.data.label_maps import ModelMaps
from pix2pixhd_jax.errors import SynthesisError
from pix2pixhd_jax.inference import features as features_lib
from pix2pixhd_jax.models.pix2pixhd import (INFERENCE_DTYPES, Networks, apply_inference, cast_for_inference, generate,
                                           model_inputs, photo_bits, size_divisor)
from pix2pixhd_jax.models.pixels import from_levels, to_levels
from pix2pixhd_jax.runtime import host_memory

Style = Union[int, np.ndarray, list, tuple]


def pad_to_multiple(array: np.ndarray, divisor: int):
    """Pad (H, W, ...) at the bottom/right, repeating edge pixels, to multiples of divisor."""
    h, w = array.shape[:2]
    ph, pw = -h % divisor, -w % divisor
    if not ph and not pw:
        return array
    return np.pad(array, [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2), mode="edge")


def instance_classes(label: np.ndarray, inst: np.ndarray) -> Dict[int, int]:
    """{instance id: its class}, read from the label map (the class under the instance's first pixel)."""
    uniq, first = np.unique(inst.reshape(-1), return_index=True)
    return dict(zip(uniq.tolist(), label.reshape(-1)[first].tolist()))


def photo_program(nets: Networks):
    """(G's variables, labels (B, H, W) integer ids or (B, H, W, input_nc) uint8 label images when
    label_nc == 0, instance ids (B, H, W) integers or None, features (B, H, W, feat_num) or None,
    noise or None) -> (B, H, W, output_nc) photos in the config's levels (uint8, or uint16 for
    data.image_bit_depth=16). Pure: jit it, or export it with the variables bound. G's input is
    built by the train step's function (models.pix2pixhd.model_inputs). `noise` is required by a
    generator with 3D noise (nets.z_dim > 0), else None: float32 (B, H, W, z_dim), what G reads,
    or (B, z_dim), one vector per picture spread over its pixels."""
    config = nets.config
    bits = photo_bits(config)

    def run(g_vars, label, inst, features, noise=None):
        batch = {"label_ids" if config.data.label_nc else "label": label}
        if inst is not None:
            batch["inst"] = inst
        inputs = model_inputs(batch, config)
        if nets.z_dim:
            inputs["noise"] = noise_map(noise, label.shape[:3], nets.z_dim)
        fake, _ = generate(nets, {"generator": g_vars["params"]}, {"generator": g_vars.get("batch_stats", {})},
                           inputs, train=False, rng=jax.random.PRNGKey(0), features=features)
        return to_levels(fake, bits, xp=jnp)

    return run


def noise_map(noise, shape, z_dim: int):
    """G's noise input (B, H, W, z_dim) float32 from (B, H, W, z_dim) or one vector per picture (B, z_dim)."""
    if noise is None:
        raise ValueError(f"this generator reads 3D noise (model.z_dim={z_dim}): pass noise of shape (B, {z_dim}) or "
                         f"(B, H, W, {z_dim})")
    noise = jnp.asarray(noise, jnp.float32)
    if noise.ndim == 2:
        noise = jnp.broadcast_to(noise[:, None, None, :], tuple(shape) + (z_dim,))
    if noise.shape != tuple(shape) + (z_dim,):
        raise ValueError(f"noise of shape {noise.shape}: expected (B, {z_dim}) or {tuple(shape) + (z_dim,)}")
    return noise


def noise_vector(seed: int, sample: int, z_dim: int, *object_key: int) -> np.ndarray:
    """The noise of one picture, z ~ N(0, I) of z_dim values, drawn from (seed, sample); with
    object_key (instance id, draw index) one object's."""
    rng = np.random.default_rng([v & 0xFFFFFFFF for v in (seed, sample) + tuple(int(k) for k in object_key)])
    return rng.standard_normal(z_dim, dtype=np.float32)


def random_style_index(seed: int, sample: int, pool_id: int, num_styles: int) -> int:
    rng = np.random.default_rng([seed & 0xFFFFFFFF, sample & 0xFFFFFFFF, int(pool_id) & 0xFFFFFFFF])
    return int(rng.integers(num_styles))


def load_generator(workdir: str, config) -> dict:
    """{'generator'[, 'encoder']} variables of the workdir's newest checkpoint (only those arrays are
    read; of a training state that keeps a moving average of G, the average's), checked against the
    shapes its config.json builds."""
    variables = checkpoint.load_network_params(workdir, discriminator=False)
    uses_e = bool(config.model.instance_feat or config.model.label_feat)
    if "encoder" not in variables and uses_e:
        raise SynthesisError(f"{workdir}: the config uses the feature encoder but the checkpoint has no encoder "
                             "weights (import it with --netE).")
    nets = Networks(config)
    side = size_divisor(config.model) * 2
    g_params, g_stats, _, _ = jax.eval_shape(lambda: nets.init(jax.random.PRNGKey(0), side, side))
    wanted = checkpoint.network_variables(g_params, g_stats)
    checkpoint.check_fit({k: variables[k] for k in wanted if k in variables}, wanted, checkpoint.checkpoint_dir(workdir),
                         f"Its config.json ({os.path.join(os.path.abspath(workdir), 'config.json')}) is another "
                         "model's: put back the one the checkpoint was trained with.")
    return variables


class Synthesizer:
    """A trained generator (+ encoder and clusters) ready to synthesize.

    Args:
      config: the model's config (config_loading.Config: a loaded file or a workdir's config.json).
      variables: {'generator': {'params', 'batch_stats'}, 'encoder': ...} as numpy or jax arrays.
      clusters: FeatureClusters for random/cluster styles (models with the encoder).
      dtype: the compute dtype, 'float32', 'bfloat16' or 'float16'; default the config's train.dtype.
    """

    def __init__(self, config, variables, clusters: Optional[features_lib.FeatureClusters] = None,
                 dtype: Optional[str] = None):
        host_memory.keep_freed_memory()
        self.config = config
        if dtype is not None and dtype not in INFERENCE_DTYPES:
            raise SynthesisError(f"dtype {dtype!r} is not one of {', '.join(INFERENCE_DTYPES)}.")
        self.dtype = dtype or str(config.train.dtype)
        self.nets = Networks(config, INFERENCE_DTYPES[self.dtype])
        self.has_encoder = self.nets.E is not None
        self.label_feat = bool(config.model.label_feat)
        self.feat_num = int(config.model.feat_num) if self.has_encoder else 0
        self.z_dim = self.nets.z_dim
        self.maps = ModelMaps.of(config)
        self.clusters = clusters
        if clusters is not None and self.has_encoder and clusters.feat_num != self.feat_num:
            raise SynthesisError(f"the clusters have {clusters.feat_num} features, the encoder gives {self.feat_num} "
                                 "(model.feat_num): they belong to another model.")
        self.set_variables(variables)
        self.program = photo_program(self.nets)
        self._generate = jax.jit(self.program)
        self._encode = jax.jit(self._encode_fn)

    def set_variables(self, variables):
        """New weights for the same networks ({'generator': ..., 'encoder': ...}): the compiled
        programs stay (they take the variables as arguments)."""
        cast = functools.partial(cast_for_inference, dtype=INFERENCE_DTYPES[self.dtype])
        self.g_vars = cast(variables["generator"])
        self.e_vars = cast(variables["encoder"]) if self.has_encoder else None

    @classmethod
    def from_workdir(cls, workdir: str, clusters_path: Optional[str] = None, dtype: Optional[str] = None):
        """The newest networks of a workdir (training state or imported), with its clusters if present."""
        config = checkpoint.read_config(workdir, checkpoint.MODEL_GROUPS)
        variables = load_generator(workdir, config)
        clusters = None
        path = clusters_path or os.path.join(workdir, features_lib.CLUSTERS_FILE)
        if (config.model.instance_feat or config.model.label_feat) and (clusters_path or os.path.isfile(path)):
            clusters = features_lib.load_clusters(path)
        return cls(config, variables, clusters, dtype)

    # ----- jitted programs -------------------------------------------------------
    def _encode_fn(self, e_vars, photo):
        return apply_inference(self.nets.E, e_vars, photo)

    # ----- inputs ----------------------------------------------------------------
    def pool_ids(self, label: np.ndarray, inst: np.ndarray) -> np.ndarray:
        return label if self.label_feat else inst

    # ----- styles ----------------------------------------------------------------
    def encode_styles(self, photo: np.ndarray, label: np.ndarray, inst: Optional[np.ndarray] = None) -> Dict[int, np.ndarray]:
        """{pool id: E's feature} from a real photo ((H, W, output_nc) or (H, W) levels: uint8, or 16-bit
        levels for image_bit_depth=16) and its label/instance maps."""
        if not self.has_encoder:
            raise SynthesisError("this model has no feature encoder: styles do not apply to it.")
        label = self.maps.check_label(label)
        inst = self.maps.instances(label, inst)
        photo = np.asarray(photo)
        photo = photo[..., None] if photo.ndim == 2 else photo
        channels = self.maps.channels
        if photo.ndim != 3 or photo.shape[:2] != label.shape[:2] or photo.shape[-1] < channels:
            raise SynthesisError(f"the style photo is {photo.shape[1::-1] if photo.ndim >= 2 else photo.shape}, the "
                                 f"label map {label.shape[1::-1]} (W, H): they must be the same size, with "
                                 f"{channels} channel(s) (data.output_nc).")
        h, w = label.shape[:2]
        x = pad_to_multiple(from_levels(photo[..., :channels], self.maps.bits), self.maps.divisor)
        out = np.asarray(self._encode(self.e_vars, x[None]))[0, :h, :w]
        ids, feats, _ = features_lib.instance_rows(out, self.pool_ids(label, inst))
        return {int(i): f for i, f in zip(ids, feats)}

    def style_vectors(self, label: np.ndarray, inst: np.ndarray, styles: Optional[Dict[int, Style]] = None,
                      seed: int = 0, sample: int = 0) -> Dict[int, np.ndarray]:
        """A feature vector per pool id: the given style (cluster index or vector), else a random cluster
        centre of its class, else zeros (a class without clusters)."""
        styles = styles or {}
        ids = self.pool_ids(label, inst)
        classes = instance_classes(label, ids)
        out = {}
        for pid, cls in classes.items():
            style = styles.get(pid)
            if style is None:
                n = self.clusters.num_styles(cls) if self.clusters is not None else 0
                out[pid] = (self.clusters.style(cls, random_style_index(seed, sample, pid, n)) if n
                            else np.zeros(self.feat_num, np.float32))
            elif isinstance(style, (int, np.integer)):
                if self.clusters is None:
                    raise SynthesisError(f"instance {pid}: cluster style {style} asked for, but this model has no "
                                         "clusters file; run `pix2pixhd-jax encode-features` first.")
                out[pid] = self.clusters.style(cls, int(style))
            else:
                vec = np.asarray(style, np.float32).reshape(-1)
                if vec.shape != (self.feat_num,):
                    raise SynthesisError(f"instance {pid}: a style vector of {vec.size} values; this model's encoder "
                                         f"has feat_num={self.feat_num}.")
                out[pid] = vec
        return out

    def feature_map(self, label, inst, vectors: Dict[int, np.ndarray]) -> np.ndarray:
        ids = self.pool_ids(label, inst)
        uniq, inverse = np.unique(ids.reshape(-1), return_inverse=True)
        table = np.stack([vectors.get(int(i), np.zeros(self.feat_num, np.float32)) for i in uniq]).astype(np.float32)
        return table[inverse.reshape(-1)].reshape(ids.shape + (self.feat_num,))

    # ----- noise -------------------------------------------------------------------
    def random_samples(self, style: str = "random") -> bool:
        """Whether the samples of a label map differ: G reads 3D noise, or cluster styles are drawn
        at random (the feature encoder with its clusters, style 'random')."""
        return bool(self.z_dim) or (self.has_encoder and self.clusters is not None and style == "random")

    def noise(self, count: int, seed: int = 0, sample: int = 0) -> Optional[np.ndarray]:
        """G's noise for `count` pictures, (count, z_dim) float32 (one vector per picture, spread over its
        pixels in the program): every picture's drawn from (seed, sample) (noise_vector); None for a
        generator without 3D noise."""
        if not self.z_dim:
            return None
        return np.broadcast_to(noise_vector(seed, sample, self.z_dim), (count, self.z_dim)).copy()

    def object_noise(self, inst: np.ndarray, styles: Optional[Dict[int, Style]], seed: int = 0,
                     sample: int = 0) -> np.ndarray:
        """G's noise for one map's instance ids (H, W) and its styles ({instance id: draw index | z of
        z_dim values}): the picture's z (seed, sample), and over each styled object its own z.
        (H, W, z_dim) float32."""
        out = np.broadcast_to(noise_vector(seed, sample, self.z_dim), inst.shape + (self.z_dim,)).copy()
        for pid, style in (styles or {}).items():
            if isinstance(style, (int, np.integer)):
                z = noise_vector(seed, sample, self.z_dim, pid, style)
            else:
                z = np.asarray(style, np.float32).reshape(-1)
                if z.shape != (self.z_dim,):
                    raise SynthesisError(f"instance {pid}: a noise vector of {z.size} values; this generator reads "
                                         f"model.z_dim={self.z_dim}.")
            out[inst == pid] = z
        return out

    def check_noise(self, noise, count: int, height: int, width: int) -> Optional[np.ndarray]:
        """Given noise, checked: (count, z_dim) or (count, height, width, z_dim) float32."""
        if not self.z_dim:
            raise SynthesisError("this model reads no noise (model.z_dim=0 or a generator other than spade): "
                                 "synthesize it without noise.")
        noise = np.asarray(noise, np.float32)
        if noise.shape not in ((count, self.z_dim), (count, height, width, self.z_dim)):
            raise SynthesisError(f"noise of shape {noise.shape}: expected ({count}, {self.z_dim}) or ({count}, "
                                 f"{height}, {width}, {self.z_dim}) (model.z_dim={self.z_dim}).")
        return noise

    # ----- synthesis ---------------------------------------------------------------
    def synthesize(self, label: np.ndarray, inst: Optional[np.ndarray] = None,
                   styles: Optional[Dict[int, Style]] = None, seed: int = 0, sample: int = 0,
                   noise: Optional[np.ndarray] = None) -> np.ndarray:
        """One photo, (H, W, output_nc) levels (uint8, or uint16 with image_bit_depth=16), for one label map
        (H, W) (a label image (H, W, input_nc) when label_nc == 0). noise: G's noise, (z_dim,) or
        (H, W, z_dim) (a generator with 3D noise; default drawn from (seed, sample))."""
        return self.synthesize_batch([label], [inst], [styles], seed=seed, sample=sample,
                                     noise=None if noise is None else np.asarray(noise)[None])[0]

    def synthesize_batch(self, labels, insts=None, styles=None, seed: int = 0, sample: int = 0, noise=None):
        """Photos for label maps of one size, in one jitted call. noise: G's noise, (B, z_dim) or
        (B, H, W, z_dim) (a generator with 3D noise; default program_noise: every picture's z from
        (seed, sample), restyled objects their own)."""
        label, inst, feats = self.program_arrays(labels, insts, styles, seed, sample)
        n, h, w = label.shape[:3]
        if noise is not None:
            noise = self.check_noise(noise, n, h, w)
        else:
            noise = self.program_noise(inst, styles, seed, sample)
        pad = lambda arrays: jnp.asarray(np.stack([pad_to_multiple(a, self.maps.divisor) for a in arrays]))  # noqa: E731
        if noise is not None and noise.ndim == 4:
            noise = pad(noise)
        out = self._generate(self.g_vars, pad(label), pad(inst), None if feats is None else pad(feats), noise)
        return np.asarray(out)[:, :h, :w]

    def program_noise(self, inst: np.ndarray, styles=None, seed: int = 0, sample: int = 0) -> Optional[np.ndarray]:
        """The program's noise for instance ids (B, H, W) (program_arrays') and one styles dict per map:
        (B, z_dim), or (B, H, W, z_dim) where an object is restyled; None without 3D noise."""
        if not self.z_dim:
            return None
        if not any(styles or []):
            return self.noise(len(inst), seed, sample)
        return np.stack([self.object_noise(ids, style, seed, sample) for ids, style in zip(inst, styles)])

    def program_arrays(self, labels, insts=None, styles=None, seed: int = 0, sample: int = 0):
        """The photo program's inputs for label maps of one size, checked (maps.check_label): label
        ids (B, H, W) int32 (label images (B, H, W, 3) when label_nc == 0), instance ids (B, H, W)
        int32 (without a map, one instance per class region), and with the encoder the features
        (B, H, W, feat_num) float32 of `styles` (one {instance id: cluster index | vector} per map)
        and the clusters; else None."""
        n = len(labels)
        insts = insts if insts is not None else [None] * n
        styles = styles if styles is not None else [None] * n
        rows = []
        for label, inst, style in zip(labels, insts, styles):
            label = self.maps.check_label(label)
            inst = self.maps.instances(label, inst)
            feats = None
            if self.has_encoder:
                feats = self.feature_map(label, inst, self.style_vectors(label, inst, style, seed, sample))
            rows.append((label, inst, feats))
        shapes = {row[0].shape for row in rows}
        if len(shapes) != 1:
            raise SynthesisError(f"label maps are synthesized together only at one size, got {sorted(shapes)}.")
        labels, insts, feats = zip(*rows)
        return np.stack(labels), np.stack(insts), np.stack(feats) if self.has_encoder else None
