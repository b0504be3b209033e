"""`pix2pixhd-jax evaluate`: the paper's scores for a trained model on a split.

Synthesizes every label map of the split (whole images, the model's own styles: encoded from
the real photo for models with the feature encoder, `--style random` for cluster styles), then
measures, on the generated photos and on the real ones:

JSON written to --out (and printed), every number a float unless said otherwise:
  workdir, segmenter, split, style      what was evaluated, and how
  num_images (int), seconds
  config                                 the model's config (its workdir's config.json)
  segmentation.generated / .real         the segmenter on generated photos / on the real photos
                                         (the oracle): pixel_accuracy, mean_iou, per_class_iou
                                         ({class id: IoU}, classes in the labels or predictions)
  frechet_distance_segmenter_features    Frechet distance between the segmenter's bottleneck
                                         features of real and generated photos (one vector per
                                         2**depth-pixel patch, up to 64 patches per image);
                                         NOT FID: comparable only between runs scored by the
                                         same segmenter
  fid, kid {mean, std}                   InceptionV3 pool3 (pytorch-fid's network and
                                         preprocessing) when --inception names its weights;
                                         null otherwise, with the reason in `inception`
  paired {psnr, ssim}                    means over images, generated vs real photo (uint8)
  diversity {num_samples, mean_l1}       mean pairwise L1 ([0, 1] scale) among K samples per label
                                         map with random cluster styles, averaged over maps; null
                                         for a model without the feature encoder (deterministic)

Each process of a multi-host run evaluates its share of the split; the counts and features
are gathered and process 0 writes the JSON.
"""

import logging
import os
import time
import zlib

import jax
import numpy as np
from tqdm import tqdm

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data import visualize
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.data.pixels import back_to_uint8
from pix2pixhd_jax.data.transforms import inference_config
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.evaluation import metrics
from pix2pixhd_jax.evaluation.segmenter import load_segmenter, segment_fn
from pix2pixhd_jax.inference.synthesis import Synthesizer, pad_to_multiple
from pix2pixhd_jax.models import inception as inception_lib
from pix2pixhd_jax.runtime import distributed
from pix2pixhd_jax.weights.inception import load_fid_inception, missing_weights_message

PATCHES_PER_IMAGE = 64


def _patch_features(bottleneck: np.ndarray, names, seed: int) -> np.ndarray:
    """Up to PATCHES_PER_IMAGE bottleneck vectors per image, at positions drawn from (seed, the
    image's name): the same patches however the split is shared among processes."""
    n, h, w, c = bottleneck.shape
    flat = bottleneck.reshape(n, h * w, c)
    k = min(PATCHES_PER_IMAGE, h * w)
    pick = lambda name: np.random.default_rng([seed, zlib.crc32(name)]).choice(h * w, k, replace=False)  # noqa: E731
    return np.concatenate([flat[i, pick(names[i])] for i in range(n)])


def evaluate(workdir: str, segmenter_dir: str, split: str = "test", dataroot=None, inception=None,
             style: str = "auto", num_samples: int = 3, batch_size: int = 4, samples_dir=None, progress=True):
    start_time = time.time()
    synth = Synthesizer.from_workdir(workdir)
    config = synth.config
    if config.data.label_nc <= 0:
        raise UserError(f"{workdir}: the model takes RGB label images (label_nc=0); the segmentation score needs "
                        "label ids.")
    _, seg_module, seg_params = load_segmenter(segmenter_dir)
    if seg_module.num_classes != config.data.label_nc:
        raise UserError(f"{segmenter_dir}: the segmenter predicts {seg_module.num_classes} classes, the model's "
                        f"label_nc is {config.data.label_nc}; train a segmenter on this dataset.")
    segment = segment_fn(seg_module, seg_params)
    seg_divisor = 2 ** seg_module.depth
    if style == "auto":
        style = "encode" if synth.has_encoder else "none"
    if style not in ("encode", "random", "none"):
        raise UserError(f"--style {style!r}: expected auto, encode or random.")
    if style != "none" and not synth.has_encoder:
        raise UserError(f"--style {style}: {workdir}'s model has no feature encoder; use --style auto.")
    if style == "random" and synth.clusters is None:
        raise UserError(f"--style random: {workdir} has no clusters file; run `pix2pixhd-jax encode-features` first.")

    incept, inception_note = None, None
    if inception:
        incept = inception_lib.feature_fn(*load_fid_inception(inception))
        inception_note = os.path.abspath(inception)
    else:
        inception_note = missing_weights_message()
        logging.warning("%s", inception_note)

    data_config = inference_config(config)
    if dataroot:
        data_config.data.dataroot = dataroot
    count, index = jax.process_count(), jax.process_index()
    pipeline = InputPipeline(data_config, split, train=False, batch_size=batch_size * count, one_hot=False,
                             process_index=index, process_count=count)
    n_classes = int(config.data.label_nc)
    conf = {"generated": metrics.ConfusionMatrix(n_classes), "real": metrics.ConfusionMatrix(n_classes)}
    seg_feats = {"generated": [], "real": []}
    inc_feats = {"generated": [], "real": []}
    psnrs, ssims, diversities = [], [], []
    if samples_dir:
        os.makedirs(samples_dir, exist_ok=True)
    bar = tqdm(total=pipeline.num_examples, disable=not progress or index != 0, desc="evaluating", unit="image")
    for batch in pipeline.iterate(0, num_epochs=1):
        labels = list(batch["label_ids"])
        insts = list(batch["inst"]) if "inst" in batch else None
        reals = back_to_uint8(batch["image"])
        styles = None
        if style == "encode":
            styles = [synth.encode_styles(r, l, None if insts is None else i)
                      for r, l, i in zip(reals, labels, insts or [None] * len(labels))]
        fakes = synth.synthesize_batch(labels, insts, styles, seed=config.seed)
        h, w = reals.shape[1:3]
        both = np.concatenate([fakes, reals])
        pred, bottleneck = segment(np.stack([pad_to_multiple(x, seg_divisor) for x in both]))
        n = len(fakes)
        # Only the patches of the image itself, not of the edge padding.
        pred, bottleneck = np.asarray(pred)[:, :h, :w], np.asarray(bottleneck)[:, :max(1, h // seg_divisor), :max(1, w // seg_divisor)]
        for i in range(n):
            conf["generated"].update(pred[i], labels[i])
            conf["real"].update(pred[n + i], labels[i])
            psnrs.append(metrics.psnr(fakes[i], reals[i]))
            ssims.append(metrics.ssim(fakes[i], reals[i]))
        seg_feats["generated"].append(_patch_features(bottleneck[:n], batch["name"], config.seed))
        seg_feats["real"].append(_patch_features(bottleneck[n:], batch["name"], config.seed))
        if incept is not None:
            inc_feats["generated"].append(incept(fakes))
            inc_feats["real"].append(incept(reals))
        if synth.has_encoder and synth.clusters is not None and num_samples > 1:
            samples = [synth.synthesize_batch(labels, insts, None, seed=config.seed, sample=k)
                       for k in range(num_samples)]
            diversities += [metrics.diversity(np.stack([s[i] for s in samples])) for i in range(n)]
        if samples_dir:
            for name, fake in zip(batch["name"], fakes):
                visualize.save_png(os.path.join(samples_dir, f"{name.decode()}.png"), fake)
        bar.update(n)
    bar.close()

    # Every process's counts and rows, so process 0 reports on the whole split.
    for key in conf:
        conf[key].matrix = distributed.sum_over_processes(conf[key].matrix)
    seg_feats = {k: distributed.concat_over_processes(_stack(v)) for k, v in seg_feats.items()}
    inc_feats = {k: distributed.concat_over_processes(_stack(v)) for k, v in inc_feats.items()}
    psnrs, ssims, diversities = (distributed.concat_over_processes(np.asarray(v, np.float64))
                                 for v in (psnrs, ssims, diversities))
    num_images = len(psnrs)
    if num_images == 0:
        raise UserError(f"the {split} split of {data_config.data.dataroot} has no images to evaluate.")
    fd_seg = metrics.frechet_distance_of(metrics.FeatureStats().update(seg_feats["real"]),
                                         metrics.FeatureStats().update(seg_feats["generated"]))
    result = {
        "workdir": os.path.abspath(workdir), "segmenter": os.path.abspath(segmenter_dir), "split": split,
        "style": style, "num_images": int(num_images),
        "segmentation": {k: _summary(c) for k, c in conf.items()},
        "frechet_distance_segmenter_features": float(fd_seg),
        "fid": None, "kid": None, "inception": inception_note,
        "paired": {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))},
        "diversity": ({"num_samples": int(num_samples), "mean_l1": float(np.mean(diversities))}
                      if len(diversities) else None),
    }
    if incept is not None:
        real, fake = inc_feats["real"], inc_feats["generated"]
        result["fid"] = float(metrics.frechet_distance_of(metrics.FeatureStats().update(real),
                                                          metrics.FeatureStats().update(fake)))
        mean, std = metrics.kid(real, fake)
        result["kid"] = {"mean": float(mean), "std": float(std)}
    result["seconds"] = round(time.time() - start_time, 2)
    result["config"] = checkpoint.config_dict(config)
    return result


def _stack(rows):
    return np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)


def _summary(conf: "metrics.ConfusionMatrix") -> dict:
    iou = conf.iou()
    return {"pixel_accuracy": float(conf.pixel_accuracy()), "mean_iou": float(conf.mean_iou()),
            "per_class_iou": {str(c): float(v) for c, v in enumerate(iou) if np.isfinite(v)}}


def write_result(result: dict, path: str):
    return atomic.write_json(path, result)
