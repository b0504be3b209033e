"""`pix2pixhd-jax train-segmenter`: the evaluation segmenter, trained on the real training photos.

`train_segmenter` is its loop, top to bottom, with the runtime's shared parts (runtime/loop.py)
as `train`'s: its workdir holds config.json and Orbax checkpoints (item 'segmenter': params,
Adam state, step), it resumes where it stopped, saves and stops on SIGTERM, stops on a
non-finite loss, writes TensorBoard scalars (loss, pixel accuracy) and ends with
`segmenter_done.json`: the last steps' training accuracy and, when the data has a test split,
the oracle there (`score_real_photos`: the segmenter on the real photos, the paper's upper
bound for any generator, per class).
`load_segmenter` gives `evaluate` a jitted photos -> (label ids, bottleneck features) function.
`export_segmenter` keeps a trained segmenter as a small folder (config.json and its parameters):
a judge to keep beside the results it scored or to share, read by `load_segmenter` like a workdir.
Training one again on the same data does not give the same judge to the last digit, so results
meant to be pooled later are scored with a kept one; `params_digest` names it in every score.
"""

import collections
import hashlib
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data import decode
from pix2pixhd_jax.data.label_maps import ModelMaps
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.models.pixels import from_levels
from pix2pixhd_jax.errors import DataError, UserError
from pix2pixhd_jax.data.readers import read_source
from pix2pixhd_jax.data.transforms import inference_config
from pix2pixhd_jax.evaluation import metrics
from pix2pixhd_jax.models.segmenter import Segmenter
from pix2pixhd_jax.models.pix2pixhd import photo_bits
from pix2pixhd_jax.runtime import distributed, loop, sharding

DONE_FILE = "segmenter_done.json"
PARAMS_FILE = "segmenter_params.msgpack"


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
    maps = ModelMaps.of(config)
    counts = np.zeros(maps.label_nc, np.int64)
    for ex in read_source(config.data, "train").examples:
        with open(ex.label, "rb") as f:
            ids = decode.decode_label(f.read(), ex.label, maps.label_nc, maps.unknown_label)
        counts += np.bincount(ids.ravel(), minlength=len(counts))[:len(counts)]
    return counts


def make_segmenter_step(module, tx, num_classes, weights=None, bits: int = 8):
    """The segmenter's step on a pipeline batch (the photo's levels of `bits` bits, label ids)."""
    def step(state, batch):
        images, label_ids = from_levels(batch["image"], bits, xp=jnp), batch["label_ids"].astype(jnp.int32)

        def loss_fn(params):
            logits, _ = module.apply({"params": params}, images)
            return cross_entropy(logits, label_ids, num_classes, weights), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == label_ids)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, {"loss": loss,
                                                                                        "pixel_accuracy": accuracy}
    return step


def train_segmenter(config, workdir: str, progress: bool = True, devices=None):
    """Train per config.data / config.segmenter in `workdir`; resumes from its newest checkpoint."""
    module = segmenter_module(config)
    seg = config.segmenter
    batch_size = int(seg.batch_size)
    # ----- Set-up: the mesh, the workdir, the data, the objective ----------------------------------
    mesh = sharding.make_mesh(devices)
    workdir = loop.prepare(config, workdir, mesh, batch_size, "segmenter.batch_size")
    pipeline = InputPipeline(config, "train", batch_size=batch_size,
                             process_index=jax.process_index(), process_count=jax.process_count())
    tx = _optimizer(config)
    size = 2 ** int(seg.depth) * 2
    weighting = str(seg.class_weighting)
    weights = None if weighting == "none" else class_weights(label_counts(config), weighting)
    if weights is not None:
        logging.info("segmenter class weights (%s): %s", weighting, np.round(weights, 3).tolist())

    def init(rng):
        params = module.init(rng, jnp.zeros((1, size, size, int(config.data.output_nc))))["params"]
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    # ----- The state: resumed at the step it was saved at, or new ------------------------------------
    state, start, shardings = loop.restore_or_init(workdir, "segmenter", init, config.seed, mesh)
    loop.write_config(workdir, config)
    step_fn = make_segmenter_step(module, tx, module.num_classes, weights, photo_bits(config))
    seg_step = loop.compiled_on_first_call(loop.jit_step(step_fn, mesh, shardings, 0, has_outputs=False), "segmenter")

    # ----- What the run writes: checkpoints, scalars -------------------------------------------------
    total, save_freq = int(seg.steps), int(seg.save_freq)
    out = loop.Outputs(workdir, "segmenter", "segmenter", start, total, pipeline.steps_per_epoch, batch_size,
                       print_freq=50, keep=2, progress=progress)
    recent = collections.deque(maxlen=50)  # the training pixel accuracy of the last steps

    def read(at, metrics):
        metrics = out.read(at, metrics, fix_hint="lower segmenter.lr and run again.",
                           show={"loss": "loss", "acc": "pixel_accuracy"})
        recent.append(float(metrics["pixel_accuracy"]))

    # ----- The loop ----------------------------------------------------------------------------------
    step, late = start, loop.Late()
    batches = loop.device_batches(pipeline.iterate(start), mesh, {"image", "label_ids"},
                                  int(config.data.device_prefetch))
    with loop.Preemption() as preemption:
        for step, (_, batch) in zip(range(start + 1, total + 1), batches):
            state, metrics = seg_step(state, batch)
            save, stop = step % save_freq == 0, preemption.check(step)
            for results in late.swap((step, metrics), now=save or stop or step == total):
                read(*results)
            out.save_if_due(step, state, due=save, preempted=stop)
    for results in late.drain():  # the data ran out before `total`
        read(*results)
    out.finish(step, state)

    # ----- The oracle: the segmenter on the real test photos ------------------------------------------
    summary = {"step": step,
               "train_pixel_accuracy_last_50": float(np.mean(recent)) if recent else None,
               "oracle": None}
    try:
        summary["oracle"] = score_real_photos(workdir, progress=progress)
    except DataError as e:
        logging.warning("the oracle is not scored (no usable test split): %s", e)
    if jax.process_index() == 0:
        atomic.write_json(os.path.join(workdir, DONE_FILE), summary)
        print(f"segmenter trained to step {step} (training pixel accuracy over the last 50 steps "
              f"{summary['train_pixel_accuracy_last_50']:.4f}); checkpoints in {checkpoint.checkpoint_dir(workdir)}")
        if summary["oracle"]:
            o = summary["oracle"]
            print(f"oracle on the {o['split']} split's real photos: pixel accuracy {o['pixel_accuracy']:.4f}, mean "
                  f"IoU {o['mean_iou']:.4f} (per class in {os.path.join(workdir, DONE_FILE)})")
    return state, summary


def load_segmenter(workdir: str):
    """(config, module, params) of a train-segmenter workdir."""
    train_it = (f"run `pix2pixhd-jax train-segmenter --config CONFIG --workdir {workdir}` first, CONFIG being the "
                "dataset's config (e.g. configs/ablation_synthetic.py:segmenter for the synthetic scenes, with "
                "--config.data.dataroot=DIR)")
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        raise UserError(f"{workdir}: no segmenter here (no config.json); {train_it}.")
    config = checkpoint.read_config(workdir)
    if "segmenter" not in config:
        raise UserError(f"{workdir}: its config.json has no 'segmenter' group; it is not a train-segmenter workdir "
                        f"({train_it}).")
    module = segmenter_module(config)
    if os.path.isfile(os.path.join(workdir, PARAMS_FILE)):
        return config, module, read_params(os.path.join(workdir, PARAMS_FILE))
    step = checkpoint.latest_step(workdir, "segmenter")
    if step is None:
        raise UserError(f"{checkpoint.checkpoint_dir(workdir)}: no segmenter checkpoint; {train_it}.")
    return config, module, checkpoint.restore_to_host(workdir, step, "segmenter")["params"]


def read_params(path: str):
    """An exported segmenter's parameters (numpy arrays) from PARAMS_FILE."""
    again = "export it again with `pix2pixhd-jax export-segmenter --workdir WORKDIR --out DIR`."
    with open(path, "rb") as f:
        data = f.read()
    try:
        params = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack's errors on cut or foreign bytes have no common base class
        raise UserError(f"{path}: not a segmenter's parameters ({len(data)} bytes; {type(e).__name__}: {e}); "
                        f"{again}") from None
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: holds {type(params).__name__}, not a tree of parameters; {again}")
    return params


def params_digest(params) -> str:
    """sha256 of a parameter tree (paths, dtypes, shapes, values, in sorted-path order): the same
    for a workdir's checkpoint and its export, whatever order either holds the keys in."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0],
                             key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def export_segmenter(workdir: str, out_dir: str) -> dict:
    """A workdir's newest segmenter as `out_dir`: config.json (data.dataroot emptied: a path of the
    machine it was trained on; give the data where it is used), PARAMS_FILE, and DONE_FILE's numbers
    where the workdir has one. Returns {"params": path, "digest": params_digest, "bytes": size}."""
    config, _, params = load_segmenter(workdir)
    if os.path.abspath(out_dir) == os.path.abspath(workdir):
        raise UserError(f"{out_dir}: export into another folder than the workdir.")
    os.makedirs(out_dir, exist_ok=True)
    config = checkpoint.config_dict(config)
    config["data"]["dataroot"] = ""
    atomic.write_json(os.path.join(out_dir, "config.json"), config)
    path = os.path.join(out_dir, PARAMS_FILE)
    data = serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, params))
    atomic.write_bytes(path, data)
    done = os.path.join(workdir, DONE_FILE)
    if os.path.isfile(done):  # its numbers, without the paths of the machine it was made on
        summary = json.load(open(done))
        for key in ("segmenter", "dataroot"):
            (summary.get("oracle") or {}).pop(key, None)
        atomic.write_json(os.path.join(out_dir, DONE_FILE), summary)
    return {"params": path, "digest": params_digest(params), "bytes": len(data)}


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


def confusion_summary(conf: metrics.ConfusionMatrix) -> dict:
    """pixel_accuracy, mean_iou and per_class_iou ({class id: IoU} over the classes in the labels
    or the predictions) of a confusion matrix."""
    iou = conf.iou()
    return {"pixel_accuracy": float(conf.pixel_accuracy()), "mean_iou": float(conf.mean_iou()),
            "per_class_iou": {str(c): float(v) for c, v in enumerate(iou) if np.isfinite(v)}}


def score_real_photos(segmenter_dir: str, dataroot=None, split: str = "test", batch_size: int = 8,
                      progress: bool = False) -> dict:
    """The oracle: the segmenter on a split's real photos against their label maps, whole images
    at the size the data config gives them (every process its share; all processes return the
    same numbers). With `classes_present`: the ids in the split's labels."""
    config, module, params = load_segmenter(segmenter_dir)
    data_config = inference_config(config)
    if dataroot:
        data_config.data.dataroot = dataroot
    bits = photo_bits(data_config)
    segment = segment_fn(module, params, bits)
    count, index = jax.process_count(), jax.process_index()
    pipeline = InputPipeline(data_config, split, train=False, batch_size=batch_size * count,
                             process_index=index, process_count=count)
    n = module.num_classes
    conf = metrics.ConfusionMatrix(n)
    present = np.zeros(n, np.int64)
    d = 2 ** module.depth
    images = 0
    for batch in pipeline.iterate(0, num_epochs=1):
        photos = batch["image"]
        h, w = photos.shape[1:3]
        pad = ((0, 0), (0, -h % d), (0, -w % d), (0, 0))
        pred, _ = segment(np.pad(photos, pad, mode="edge"))
        labels = np.asarray(batch["label_ids"])
        conf.update(np.asarray(pred)[:, :h, :w], labels)
        present += np.bincount(np.clip(labels, 0, n).ravel(), minlength=n + 1)[:n]
        images += len(labels)
        if progress and index == 0:
            logging.info("oracle: %d images scored", images)
    conf.matrix = distributed.sum_over_processes(conf.matrix)
    present = distributed.sum_over_processes(present)
    images = int(distributed.sum_over_processes(np.asarray([images]))[0])
    if images == 0:
        raise UserError(f"the {split} split of {data_config.data.dataroot} has no images to score.")
    return {"segmenter": os.path.abspath(segmenter_dir), "dataroot": os.path.abspath(data_config.data.dataroot),
            "split": split, "num_images": images, **confusion_summary(conf),
            "classes_present": [int(c) for c in np.flatnonzero(present)]}
