"""`pix2pixhd-jax encode-features`: E over every training photo, then per-class k-means.

E runs batched and jitted with the batch sharded over all devices; each process
encodes its share of the images and the per-instance rows are gathered before the
clustering, which runs on every process (same input, same seed, same result) and is
written by process 0. Writes <workdir>/features_clustered.npz (the styles; format in
features.py) and <workdir>/features_instances.npz (every instance's feature, class,
area fraction, image name and cluster, for analysis).
"""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.data.transforms import inference_config
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.inference import features as features_lib
from pix2pixhd_jax.inference.synthesis import instance_classes, load_generator
from pix2pixhd_jax.models.pix2pixhd import Networks, apply_inference, photo_bits
from pix2pixhd_jax.models.pixels import from_levels
from pix2pixhd_jax.runtime import distributed, sharding


def collect_instance_features(config, e_vars, split="train", batch_size=None, devices=None, progress=True):
    """Per-instance rows over a split: dict of arrays name, pool_id, label, area (fraction), feature."""
    config = inference_config(config)
    nets = Networks(config)
    mesh = sharding.make_mesh(devices)
    n_dev = mesh.shape[sharding.DATA]
    batch_size = batch_size or max(config.train.batch_size, n_dev)
    batch_size = -(-batch_size // n_dev) * n_dev
    pipeline = InputPipeline(config, split, train=False, batch_size=batch_size,
                             process_index=jax.process_index(), process_count=jax.process_count())
    if config.data.label_nc == 0:
        raise UserError("encode-features needs label ids (data.label_nc > 0) to group instances by class.")
    e_vars = jax.device_put(e_vars, sharding.replicated(mesh))
    bits = photo_bits(config)
    encode = jax.jit(lambda v, x: apply_inference(nets.E, v, from_levels(x, bits, jnp)),
                     out_shardings=sharding.replicated(mesh))
    local = pipeline.batch
    rows = {"name": [], "pool_id": [], "label": [], "area": [], "feature": []}
    bar = tqdm(total=pipeline.steps_per_epoch, disable=not progress or jax.process_index() != 0,
               desc="encoding", unit="batch")
    for batch in _same_length(pipeline, local):
        n = len(batch["image"])
        image = batch["image"]
        if n < local:  # the last batch: pad to the jitted shape, drop the padding afterwards
            image = np.concatenate([image, np.repeat(image[-1:], local - n, 0)])
        out = np.asarray(encode(e_vars, sharding.global_batch({"image": image}, mesh)["image"]))
        out = out[jax.process_index() * local:][:n] if jax.process_count() > 1 else out[:n]
        for i in range(n if "label_ids" in batch else 0):
            label = batch["label_ids"][i]
            ids = label if config.model.label_feat else batch["inst"][i]
            uniq, feats, counts = features_lib.instance_rows(out[i], ids)
            classes = instance_classes(label, ids)
            rows["name"] += [batch["name"][i].decode()] * len(uniq)
            rows["pool_id"].append(uniq)
            rows["label"].append(np.asarray([classes[int(u)] for u in uniq]))
            rows["area"].append(counts / float(ids.size))
            rows["feature"].append(feats)
        bar.update(1)
    bar.close()
    out = {"name": np.asarray(rows["name"])}
    for key in ("pool_id", "label", "area", "feature"):
        empty = np.zeros((0, int(config.model.feat_num)) if key == "feature" else (0,), np.float32)
        out[key] = np.concatenate(rows[key]) if rows[key] else empty
    if jax.process_count() > 1:
        out = _gather_rows(out)
    return out


def _same_length(pipeline, local):
    """The pipeline's batches, then stand-in batches until every process has run as many as the
    busiest: the encoder is one program over all processes' devices, so all must call it
    equally often (a process's share can be one image shorter, or empty)."""
    per_process = -(-pipeline.num_examples // pipeline.process_count)
    steps = -(-per_process // local)
    done, last = 0, None
    for batch in pipeline.iterate(0, num_epochs=1):
        done, last = done + 1, batch
        yield batch
    if done < steps and last is None:  # this process had no image at all
        h, w = pipeline.output_size[1], pipeline.output_size[0]
        last = {"image": np.zeros((1, h, w, 3), np.float32)}
    for _ in range(steps - done):
        yield {"image": last["image"][:1]}  # no label_ids: encoded, then ignored


def _gather_rows(rows):
    """Every process's rows, in process order (names travel as fixed-width bytes)."""
    out = {k: distributed.concat_over_processes(rows[k]) for k in ("pool_id", "label", "area", "feature")}
    names = np.asarray([s.encode() for s in rows["name"]], dtype="S256").view(np.uint8).reshape(-1, 256)
    names = distributed.concat_over_processes(names)
    out["name"] = np.asarray([bytes(r).rstrip(b"\0").decode() for r in names])
    return out


def encode_features(workdir: str, split: str = "train", n_clusters=None, batch_size=None, progress=True):
    """Encode, cluster, write both files; returns (clusters, rows with their 'cluster' column)."""
    config = checkpoint.read_config(workdir, checkpoint.MODEL_GROUPS)
    if not (config.model.instance_feat or config.model.label_feat):
        raise UserError(f"{workdir}: the model was trained without the feature encoder (model.instance_feat and "
                        "model.label_feat are off); there are no features to cluster.")
    variables = load_generator(workdir, config)
    n_clusters = n_clusters or config.model.n_clusters
    rows = collect_instance_features(config, variables["encoder"], split, batch_size, progress=progress)
    centers, counts, assignment = features_lib.cluster_features(rows["label"], rows["feature"], rows["area"],
                                                                n_clusters, seed=config.seed)
    rows["cluster"] = assignment
    step = checkpoint.latest_step(workdir, "state")
    step = checkpoint.latest_step(workdir, "models") if step is None else step
    clusters = features_lib.FeatureClusters(
        centers=centers, feat_num=int(config.model.feat_num), counts=counts,
        meta={"n_clusters": int(n_clusters), "pool": "label" if config.model.label_feat else "instance",
              "step": step, "split": split, "min_area_fraction": features_lib.MIN_AREA_FRACTION,
              "source": "encode-features"})
    if jax.process_index() == 0:
        features_lib.save_clusters(os.path.join(workdir, features_lib.CLUSTERS_FILE), clusters)
        atomic.write_npz(os.path.join(workdir, features_lib.INSTANCES_FILE), rows)
        summary = {int(k): len(v) for k, v in centers.items()}
        logging.info("clusters per class: %s", json.dumps(summary))
    return clusters, rows


def import_reference(workdir: str, npy_path: str):
    config = checkpoint.read_config(workdir, checkpoint.MODEL_GROUPS)
    clusters = features_lib.import_reference_clusters(npy_path, int(config.model.feat_num))
    path = features_lib.save_clusters(os.path.join(workdir, features_lib.CLUSTERS_FILE), clusters)
    return clusters, path
