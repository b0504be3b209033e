"""`pix2pixhd-jax evaluate`: the paper's scores for a trained model on a split.

Synthesizes every label map of the split (whole images, the model's own styles: encoded from
the real photo for models with the feature encoder, `--style random` for cluster styles; a
model with 3D noise with the noise of (config.seed, sample 0)) with the generator that
synthesizes (the moving average of G where the training state keeps one, as OASIS evaluates),
then measures, on the generated photos and on the real ones:

JSON written to --out (and printed), every number a float unless said otherwise:
  workdir, segmenter, split, style      what was evaluated, and how
  segmenter_digest                       the judge's parameters (segmenter.params_digest): scores
                                         with one digest come from one judge
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
  spectrum {band: {log10_ratio,          the luminance power spectrum against the real photos'
    peak_log10_ratio, peak_period}}      per octave band of periods (2-4, 4-8, 8-16 px): the
                                         band's power (log10 of generated / real; < 0: blur) and
                                         its most over-powered frequency (a grid texture's peak)
                                         with that frequency's period; a band is null for images
                                         under 32 px; evaluation.spectrum
  diversity {num_samples, mean_l1}       mean pairwise L1 ([0, 1] scale) among K samples per label
                                         map, each with other noise (3D noise) or random cluster
                                         styles (the feature encoder), averaged over maps; null for
                                         a model that draws nothing at random

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
from pix2pixhd_jax.data.transforms import inference_config
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.evaluation import metrics, spectrum
from pix2pixhd_jax.evaluation.segmenter import confusion_summary, load_segmenter, params_digest, segment_fn
from pix2pixhd_jax.inference.synthesis import Synthesizer, pad_to_multiple
from pix2pixhd_jax.models import inception as inception_lib
from pix2pixhd_jax.models.pix2pixhd import photo_bits
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


class Evaluation:
    """One split scored by one segmenter: what `evaluate` reports, for any Synthesizer of the
    dataset. Built once (segmenter, input pipeline, Inception), run as often as wanted: training
    runs it every train.eval_every steps on its current generator, `evaluate` once on a workdir's.
    """

    def __init__(self, config, segmenter_dir: str, split: str = "test", dataroot=None, inception=None,
                 batch_size: int = 4):
        if config.data.label_nc <= 0:
            raise UserError("the model takes RGB label images (label_nc=0); the segmentation score needs label ids.")
        _, self.seg_module, seg_params = load_segmenter(segmenter_dir)
        if self.seg_module.num_classes != config.data.label_nc:
            raise UserError(f"{segmenter_dir}: the segmenter predicts {self.seg_module.num_classes} classes, the "
                            f"model's label_nc is {config.data.label_nc}; train a segmenter on this dataset.")
        self.config, self.segmenter_dir, self.split = config, segmenter_dir, split
        self.segmenter_digest = params_digest(seg_params)
        self.bits = photo_bits(config)
        self.segment = segment_fn(self.seg_module, seg_params, self.bits)
        self.seg_divisor = 2 ** self.seg_module.depth
        self.incept = None
        if inception:
            self.incept = inception_lib.feature_fn(*load_fid_inception(inception))
            self.inception_note = os.path.abspath(inception)
        else:
            self.inception_note = missing_weights_message()
        data_config = inference_config(config)
        if dataroot:
            data_config.data.dataroot = dataroot
        self.dataroot = data_config.data.dataroot
        count, index = jax.process_count(), jax.process_index()
        self.pipeline = InputPipeline(data_config, split, train=False, batch_size=batch_size * count,
                                      process_index=index, process_count=count)

    def run(self, synth: Synthesizer, style: str = "auto", num_samples: int = 3, samples_dir=None,
            progress: bool = True) -> dict:
        """The scores of `synth`'s photos (and of the real ones) on the split."""
        config = self.config
        if style == "auto":
            style = "encode" if synth.has_encoder else "none"
        if style not in ("encode", "random", "none"):
            raise UserError(f"--style {style!r}: expected auto, encode or random.")
        if style != "none" and not synth.has_encoder:
            raise UserError(f"--style {style}: the model has no feature encoder; use --style auto.")
        if style == "random" and synth.clusters is None:
            raise UserError("--style random: the model has no clusters file; run `pix2pixhd-jax encode-features` "
                            "first.")
        n_classes = int(config.data.label_nc)
        conf = {"generated": metrics.ConfusionMatrix(n_classes), "real": metrics.ConfusionMatrix(n_classes)}
        seg_feats = {"generated": [], "real": []}
        inc_feats = {"generated": [], "real": []}
        psnrs, ssims, diversities = [], [], []
        spectra = {"generated": [], "real": []}
        if samples_dir:
            atomic.output_folder(samples_dir, "--samples-dir")
        bar = tqdm(total=self.pipeline.num_examples, disable=not progress or jax.process_index() != 0,
                   desc="evaluating", unit="image")
        d = self.seg_divisor
        for batch in self.pipeline.iterate(0, num_epochs=1):
            labels = list(batch["label_ids"])
            insts = list(batch["inst"]) if "inst" in batch else None
            reals = batch["image"]
            styles = None
            if style == "encode":
                styles = [synth.encode_styles(r, l, None if insts is None else i)
                          for r, l, i in zip(reals, labels, insts or [None] * len(labels))]
            fakes = synth.synthesize_batch(labels, insts, styles, seed=config.seed)
            h, w = reals.shape[1:3]
            both = np.concatenate([fakes, reals])
            pred, bottleneck = self.segment(np.stack([pad_to_multiple(x, d) for x in both]))
            n = len(fakes)
            # Only the patches of the image itself, not of the edge padding.
            pred = np.asarray(pred)[:, :h, :w]
            bottleneck = np.asarray(bottleneck)[:, :max(1, h // d), :max(1, w // d)]
            for i in range(n):
                conf["generated"].update(pred[i], labels[i])
                conf["real"].update(pred[n + i], labels[i])
                psnrs.append(metrics.psnr(fakes[i], reals[i]))
                ssims.append(metrics.ssim(fakes[i], reals[i]))
            spectra["generated"].append(spectrum.spectra(fakes))
            spectra["real"].append(spectrum.spectra(reals))
            seg_feats["generated"].append(_patch_features(bottleneck[:n], batch["name"], config.seed))
            seg_feats["real"].append(_patch_features(bottleneck[n:], batch["name"], config.seed))
            if self.incept is not None:
                inc_feats["generated"].append(self.incept(fakes))
                inc_feats["real"].append(self.incept(reals))
            if synth.random_samples() and num_samples > 1:
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
        spectra = {k: distributed.concat_over_processes(np.concatenate(v) if v else spectrum.spectra([]))
                   for k, v in spectra.items()}
        seg_feats = {k: distributed.concat_over_processes(_stack(v)) for k, v in seg_feats.items()}
        inc_feats = {k: distributed.concat_over_processes(_stack(v)) for k, v in inc_feats.items()}
        psnrs, ssims, diversities = (distributed.concat_over_processes(np.asarray(v, np.float64))
                                     for v in (psnrs, ssims, diversities))
        num_images = len(psnrs)
        if num_images == 0:
            raise UserError(f"the {self.split} split of {self.dataroot} has no images to evaluate.")
        fd_seg = metrics.frechet_distance_of(metrics.FeatureStats().update(seg_feats["real"]),
                                             metrics.FeatureStats().update(seg_feats["generated"]))
        result = {
            "segmenter": os.path.abspath(self.segmenter_dir), "segmenter_digest": self.segmenter_digest,
            "split": self.split, "style": style,
            "num_images": int(num_images),
            "segmentation": {k: confusion_summary(c) for k, c in conf.items()},
            "frechet_distance_segmenter_features": float(fd_seg),
            "fid": None, "kid": None, "inception": self.inception_note,
            "paired": {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))},
            "spectrum": spectrum.compare(spectra["generated"], spectra["real"]),
            "diversity": ({"num_samples": int(num_samples), "mean_l1": float(np.mean(diversities))}
                          if len(diversities) else None),
        }
        if self.incept is not None:
            real, fake = inc_feats["real"], inc_feats["generated"]
            result["fid"] = float(metrics.frechet_distance_of(metrics.FeatureStats().update(real),
                                                              metrics.FeatureStats().update(fake)))
            mean, std = metrics.kid(real, fake)
            result["kid"] = {"mean": float(mean), "std": float(std)}
        return result


class TrainingEvaluator:
    """The Evaluation of a training run's current generator (its moving average where the state
    keeps one), for train.eval_every: on the held-out split (train.eval_split of
    train.eval_dataroot, default the config's data), judged by train.eval_segmenter. Called with
    the step's train state on every process; returns scalars."""

    def __init__(self, config):
        train = config.train
        if not train.eval_segmenter:
            raise UserError(f"train.eval_every={train.eval_every} needs a judge: --config.train.eval_segmenter=DIR "
                            "(a `pix2pixhd-jax train-segmenter` workdir for this dataset).")
        self.config = config
        self.evaluation = Evaluation(config, train.eval_segmenter, train.eval_split, train.eval_dataroot or None)
        self.synth = None

    def __call__(self, step: int, state) -> dict:
        g_params, g_stats = distributed.gather_to_host(checkpoint.inference_generator(state))
        variables = checkpoint.network_variables(g_params, g_stats)
        if self.synth is None:
            self.synth = Synthesizer(self.config, variables)
        else:
            self.synth.set_variables(variables)
        return scalars(self.evaluation.run(self.synth, style="auto", num_samples=1, progress=False))


def scalars(result: dict) -> dict:
    """The numbers of an evaluation's result under flat names, for TensorBoard and metrics.jsonl."""
    seg = result["segmentation"]
    out = {"eval/mean_iou": seg["generated"]["mean_iou"], "eval/pixel_accuracy": seg["generated"]["pixel_accuracy"],
           "eval/oracle_mean_iou": seg["real"]["mean_iou"], "eval/oracle_pixel_accuracy": seg["real"]["pixel_accuracy"],
           "eval/frechet_distance_segmenter": result["frechet_distance_segmenter_features"],
           "eval/psnr": result["paired"]["psnr"], "eval/ssim": result["paired"]["ssim"]}
    for band, ratio in (result.get("spectrum") or {}).items():
        if ratio is not None:
            out[f"eval/spectrum_log10_ratio_{band}"] = ratio["log10_ratio"]
            out[f"eval/spectrum_peak_log10_ratio_{band}"] = ratio["peak_log10_ratio"]
    if result["fid"] is not None:
        out["eval/fid"] = result["fid"]
    return out


def evaluate(workdir: str, segmenter_dir: str, split: str = "test", dataroot=None, inception=None,
             style: str = "auto", num_samples: int = 3, batch_size: int = 4, samples_dir=None, progress=True):
    start_time = time.time()
    synth = Synthesizer.from_workdir(workdir)
    if synth.config.data.label_nc <= 0:
        raise UserError(f"{workdir}: the model takes RGB label images (label_nc=0); the segmentation score needs "
                        "label ids.")
    evaluation = Evaluation(synth.config, segmenter_dir, split, dataroot, inception, batch_size)
    if evaluation.incept is None:
        logging.warning("%s", evaluation.inception_note)
    result = {"workdir": os.path.abspath(workdir),
              **evaluation.run(synth, style, num_samples, samples_dir, progress)}
    result["seconds"] = round(time.time() - start_time, 2)
    result["config"] = checkpoint.config_dict(synth.config)
    return result


def _stack(rows):
    return np.concatenate(rows) if rows else np.zeros((0, 1), np.float32)


def write_result(result: dict, path: str):
    return atomic.write_json(path, result)
