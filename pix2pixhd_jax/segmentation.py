"""`pix2pixhd-jax train-segmenter`: the evaluation segmenter, trained on the real training photos.

Its workdir holds config.json and Orbax checkpoints (item 'segmenter': params, Adam state,
step) like any other, resumes where it stopped, writes TensorBoard scalars (loss, pixel
accuracy) and ends with `segmenter_done.json` (the last steps' training accuracy).
`load_segmenter` gives `evaluate` a jitted photos -> (label ids, bottleneck features) function.
"""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from pix2pixhd_jax import atomic, checkpoint, sharding
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.models.segmenter import Segmenter

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


def cross_entropy(logits, label_ids, num_classes):
    """Mean softmax cross-entropy over pixels whose id is a class (0..num_classes-1)."""
    valid = (label_ids >= 0) & (label_ids < num_classes)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, label_ids, 0))
    return jnp.sum(losses * valid) / jnp.maximum(jnp.sum(valid), 1)


def make_train_step(module, tx, num_classes):
    def step(state, batch):
        def loss_fn(params):
            logits, _ = module.apply({"params": params}, batch["image"])
            return cross_entropy(logits, batch["label_ids"], num_classes), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label_ids"])
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, {"loss": loss,
                                                                                        "pixel_accuracy": accuracy}
    return step


def _manager(workdir, keep=2):
    return ocp.CheckpointManager(checkpoint.checkpoint_dir(workdir),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def train_segmenter(config, workdir: str, progress: bool = True, devices=None):
    """Train per config.data / config.segmenter in `workdir`; resumes from its newest checkpoint."""
    from tqdm import tqdm

    from pix2pixhd_jax.data.pipeline import InputPipeline
    from pix2pixhd_jax.metric_writer import MetricWriter

    workdir = os.path.abspath(workdir)
    module = segmenter_module(config)
    seg = config.segmenter
    mesh = sharding.make_mesh(devices)
    sharding.check_batch(int(seg.batch_size), mesh)
    pipeline = InputPipeline(config, "train", batch_size=int(seg.batch_size), one_hot=False,
                             process_index=jax.process_index(), process_count=jax.process_count())
    tx = _optimizer(config)
    size = 2 ** int(seg.depth) * 2

    def init(rng):
        params = module.init(rng, jnp.zeros((1, size, size, 3)))["params"]
        return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}

    repl = sharding.replicated(mesh)
    mngr = _manager(workdir)
    start = mngr.latest_step()
    if start is not None:
        shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
        abstract = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), shapes)
        state = mngr.restore(start, args=ocp.args.Composite(segmenter=ocp.args.StandardRestore(abstract)))["segmenter"]
        logging.info("resuming the segmenter from %s at step %d", checkpoint.checkpoint_dir(workdir), start)
    else:
        start = 0
        state = jax.jit(init, out_shardings=repl)(jax.random.PRNGKey(config.seed))
    if jax.process_index() == 0:
        checkpoint.write_config(workdir, config)
    step_fn = jax.jit(make_train_step(module, tx, module.num_classes),
                      in_shardings=(repl, sharding.batch_sharding(mesh)), out_shardings=(repl, repl),
                      donate_argnums=(0,))
    total = int(seg.steps)
    writer = MetricWriter(os.path.join(workdir, "tensorboard"), enabled=jax.process_index() == 0)
    bar = tqdm(total=total, initial=start, disable=not progress or jax.process_index() != 0, unit="step",
               desc="segmenter")
    recent = []
    step = start
    for host_batch in pipeline.iterate(start):
        if step >= total:
            break
        batch = sharding.global_batch({"image": host_batch["image"], "label_ids": host_batch["label_ids"]}, mesh)
        state, metrics = step_fn(state, batch)
        step += 1
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not np.isfinite(metrics["loss"]):
            raise UserError(f"the segmenter's loss is not finite at step {step}; lower segmenter.lr and resume.")
        recent = (recent + [metrics])[-50:]
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['pixel_accuracy']:.3f}", refresh=False)
        if step % 50 == 0 or step == total:
            writer.scalars(step, metrics)
        if step % int(seg.save_freq) == 0 or step == total:
            mngr.save(step, args=ocp.args.Composite(segmenter=ocp.args.StandardSave(state)), force=True)
    mngr.wait_until_finished()
    mngr.close()
    bar.close()
    writer.close()
    summary = {"step": step, "train_pixel_accuracy_last_50": float(np.mean([m["pixel_accuracy"] for m in recent]))
               if recent else None}
    if jax.process_index() == 0:
        atomic.write_json(os.path.join(workdir, DONE_FILE), summary)
        print(f"segmenter trained to step {step} (training pixel accuracy over the last 50 steps "
              f"{summary['train_pixel_accuracy_last_50']:.4f}); checkpoints in {checkpoint.checkpoint_dir(workdir)}")
    return state, summary


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


def segment_fn(module, params):
    """Jitted photos ((N, H, W, 3) uint8, H and W multiples of 2**depth) -> (label ids (N, H, W),
    bottleneck features (N, h, w, C))."""
    params = jax.device_put(params, jax.local_devices()[0])

    @jax.jit
    def run(p, images):
        x = images.astype(jnp.float32) / 127.5 - 1.0
        logits, bottleneck = module.apply({"params": p}, x)
        return jnp.argmax(logits, -1).astype(jnp.int32), bottleneck

    return lambda images: run(params, images)
