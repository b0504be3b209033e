"""`pix2pixhd-jax train-segmenter`: the evaluation segmenter, trained on the real training photos.

It trains on the runtime's loop skeleton like any other model: its workdir holds config.json
and Orbax checkpoints (item 'segmenter': params, Adam state, step), it resumes where it
stopped, saves and stops on SIGTERM, stops on a non-finite loss, writes TensorBoard scalars
(loss, pixel accuracy) and ends with `segmenter_done.json` (the last steps' training accuracy).
`load_segmenter` gives `evaluate` a jitted photos -> (label ids, bottleneck features) function.
"""

import collections
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data import decode
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.data.pixels import from_levels
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.data.readers import read_source
from pix2pixhd_jax.models.segmenter import Segmenter
from pix2pixhd_jax.runtime import loop, sharding

DONE_FILE = "segmenter_done.json"


def segmenter_module(config) -> Segmenter:
    if config.data.label_nc <= 0:
        raise UserError("the segmenter predicts label ids: data.label_nc must be > 0 (label_nc=0 datasets such as "
                        "edges2photo have no classes to score).")
    return Segmenter(num_classes=int(config.data.label_nc), width=int(config.segmenter.width),
                     depth=int(config.segmenter.depth))


def _optimizer(config):
    seg = config.segmenter
    return optax.adam(optax.cosine_decay_schedule(float(seg.lr), int(seg.steps)))


CLASS_WEIGHTINGS = ("none", "inverse_sqrt_frequency", "median_frequency")


def cross_entropy(logits, label_ids, num_classes, class_weights=None):
    """Mean softmax cross-entropy over pixels whose id is a class (0..num_classes-1); with
    class_weights (num_classes,), each pixel weighted by its class's weight (a weighted mean)."""
    valid = (label_ids >= 0) & (label_ids < num_classes)
    ids = jnp.where(valid, label_ids, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
    weights = valid.astype(jnp.float32)
    if class_weights is not None:
        weights = weights * jnp.asarray(class_weights, jnp.float32)[ids]
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1e-6)


def class_weights(counts: np.ndarray, weighting: str) -> np.ndarray:
    """Per-class loss weights from the training labels' pixel counts: 'inverse_sqrt_frequency'
    (1 / sqrt(f)) or 'median_frequency' (median(f) / f, Eigen and Fergus), normalised to mean 1
    over the classes present; absent classes weigh 0. 'none': all 1."""
    counts = np.asarray(counts, np.float64)
    if weighting == "none":
        return np.ones(len(counts), np.float32)
    if weighting not in CLASS_WEIGHTINGS:
        raise UserError(f"segmenter.class_weighting={weighting!r} is not one of {', '.join(CLASS_WEIGHTINGS)}.")
    present = counts > 0
    freq = np.where(present, counts / max(counts.sum(), 1), 0.0)
    w = np.zeros_like(freq)
    if weighting == "inverse_sqrt_frequency":
        w[present] = 1.0 / np.sqrt(freq[present])
    else:
        w[present] = np.median(freq[present]) / freq[present]
    return (w / w[present].mean()).astype(np.float32)


def label_counts(config) -> np.ndarray:
    """Pixels per class over the training split's label maps (read as files, at their own size)."""
    data = config.data
    counts = np.zeros(int(data.label_nc), np.int64)
    for ex in read_source(data, "train").examples:
        with open(ex.label, "rb") as f:
            ids = decode.decode_label(f.read(), ex.label, int(data.label_nc), decode.unknown_label_of(data))
        counts += np.bincount(ids.ravel(), minlength=len(counts))[:len(counts)]
    return counts


def make_train_step(module, tx, num_classes, weights=None):
    def step(state, batch):
        def loss_fn(params):
            logits, _ = module.apply({"params": params}, batch["image"])
            return cross_entropy(logits, batch["label_ids"], num_classes, weights), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label_ids"])
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, {"loss": loss,
                                                                                        "pixel_accuracy": accuracy}
    return step


def train_segmenter(config, workdir: str, progress: bool = True, devices=None):
    """Train per config.data / config.segmenter in `workdir`; resumes from its newest checkpoint."""
    module = segmenter_module(config)
    seg = config.segmenter
    batch_size = int(seg.batch_size)
    mesh = sharding.make_mesh(devices)
    workdir = loop.prepare(config, workdir, mesh, batch_size)
    pipeline = InputPipeline(config, "train", batch_size=batch_size, one_hot=False,
                             process_index=jax.process_index(), process_count=jax.process_count())
    tx = _optimizer(config)
    size = 2 ** int(seg.depth) * 2
    weighting = str(seg.get("class_weighting", "none"))
    weights = None if weighting == "none" else class_weights(label_counts(config), weighting)
    if weights is not None:
        logging.info("segmenter class weights (%s): %s", weighting, np.round(weights, 3).tolist())

    def init(rng):
        params = module.init(rng, jnp.zeros((1, size, size, int(config.data.output_nc))))["params"]
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    total, save_freq = int(seg.steps), int(seg.save_freq)
    recent = collections.deque(maxlen=50)
    job = loop.Job(
        name="segmenter", item="segmenter", seed=config.seed, init=init,
        step=make_train_step(module, tx, module.num_classes, weights), batches=pipeline.iterate,
        batch_keys=("image", "label_ids"), global_batch=batch_size, steps_per_epoch=pipeline.steps_per_epoch,
        total_steps=total, save_due=lambda step: step % save_freq == 0, print_freq=50,
        keep_checkpoints=2, fix_hint="lower segmenter.lr and run again.",
        on_step=lambda at, metrics, outputs, batch, writer: recent.append(float(metrics["pixel_accuracy"])),
        postfix=lambda m: {"loss": f"{m['loss']:.3f}", "acc": f"{m['pixel_accuracy']:.3f}"})
    result = loop.run(job, config, workdir, mesh, progress)
    summary = {"step": result.step,
               "train_pixel_accuracy_last_50": float(np.mean(recent)) if recent else None}
    if jax.process_index() == 0:
        atomic.write_json(os.path.join(workdir, DONE_FILE), summary)
        print(f"segmenter trained to step {result.step} (training pixel accuracy over the last 50 steps "
              f"{summary['train_pixel_accuracy_last_50']:.4f}); checkpoints in {checkpoint.checkpoint_dir(workdir)}")
    return result.state, summary


def load_segmenter(workdir: str):
    """(config, module, params) of a train-segmenter workdir."""
    config = checkpoint.read_config(workdir)
    if "segmenter" not in config:
        raise UserError(f"{workdir}: its config.json has no 'segmenter' group; it is not a train-segmenter workdir.")
    module = segmenter_module(config)
    step = checkpoint.latest_step(workdir, "segmenter")
    if step is None:
        raise UserError(f"{checkpoint.checkpoint_dir(workdir)}: no segmenter checkpoint; run "
                        f"`pix2pixhd-jax train-segmenter --workdir {workdir}` first.")
    return config, module, checkpoint.restore_to_host(workdir, step, "segmenter")["params"]


def segment_fn(module, params, bits: int = 8):
    """Jitted photos ((N, H, W, C) levels of `bits` bits, H and W multiples of 2**depth) -> (label
    ids (N, H, W), bottleneck features (N, h, w, C))."""
    params = jax.device_put(params, jax.local_devices()[0])

    @jax.jit
    def run(p, images):
        x = from_levels(images, bits, xp=jnp)
        logits, bottleneck = module.apply({"params": p}, x)
        return jnp.argmax(logits, -1).astype(jnp.int32), bottleneck

    return lambda images: run(params, images)
