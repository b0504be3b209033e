"""Per-instance features of the encoder E and their per-class k-means styles (paper sec. 3.4).

After training with the encoder, E runs over every training photo; each instance
gives one feature (E's output averaged over the instance, which is what the
instance-wise average pooling broadcasts) and its area. Instances larger than 1/64
of the image are kept, and k-means with K = min(N, n_clusters) per semantic class
turns them into the styles a user picks from at synthesis time.

The clusters file, `<workdir>/features_clustered.npz` (numpy .npz, no pickle):
  meta               JSON string: {"format": "pix2pixhd_jax.features_clustered/1",
                     "feat_num", "n_clusters", "pool": "instance"|"label", "step",
                     "min_area_fraction", "source"}
  centers_<label>    (K, feat_num) float32: the cluster centres of semantic class <label>
  counts_<label>     (K,) int64: training instances in each cluster (absent when imported)
The reference's `features_clustered_010.npy` (a pickled {label: centres} dict) is
imported with `import_reference_clusters`.
"""

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from pix2pixhd_jax import atomic
from pix2pixhd_jax.errors import FeaturesError

CLUSTERS_FILE = "features_clustered.npz"
INSTANCES_FILE = "features_instances.npz"
FORMAT = "pix2pixhd_jax.features_clustered/1"
# The reference keeps an instance when its pixel count / (H*W/32) > 0.5, i.e. more than 1/64 of the image.
MIN_AREA_FRACTION = 1.0 / 64


def label_of_instance(inst_ids):
    """Cityscapes' convention: an id >= 1000 is label*1000+k, a smaller id is the label itself."""
    inst_ids = np.asarray(inst_ids)
    return np.where(inst_ids >= 1000, inst_ids // 1000, inst_ids)


@dataclass
class FeatureClusters:
    centers: Dict[int, np.ndarray]
    feat_num: int
    counts: Dict[int, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def num_styles(self, label: int) -> int:
        return len(self.centers.get(int(label), ()))

    def style(self, label: int, index: int) -> np.ndarray:
        centers = self.centers.get(int(label))
        if centers is None:
            raise FeaturesError(f"class {label} has no clusters (classes with clusters: {sorted(self.centers)}).")
        if not 0 <= index < len(centers):
            raise FeaturesError(f"style {index} of class {label} does not exist: the class has {len(centers)} "
                                f"clusters (0..{len(centers) - 1}).")
        return centers[index]


def save_clusters(path: str, clusters: FeatureClusters):
    """Write the clusters file atomically (a temporary file renamed into place)."""
    arrays = {"meta": np.asarray(json.dumps(dict(clusters.meta, format=FORMAT, feat_num=clusters.feat_num)))}
    for label, centers in clusters.centers.items():
        arrays[f"centers_{int(label)}"] = np.asarray(centers, np.float32)
    for label, counts in clusters.counts.items():
        arrays[f"counts_{int(label)}"] = np.asarray(counts, np.int64)
    return atomic.write_npz(path, arrays)


def load_clusters(path: str) -> FeatureClusters:
    if not os.path.isfile(path):
        raise FeaturesError(f"{path}: no clusters file. Run `pix2pixhd-jax encode-features --workdir DIR` after "
                            "training with the encoder, or import the reference's file with "
                            "`pix2pixhd-jax encode-features --workdir DIR --import-reference features_clustered_010.npy`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: np.asarray(data[k]) for k in data.files if k != "meta"}
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise FeaturesError(f"{path}: not a pix2pixhd-jax clusters file, or a damaged one ({e}); run "
                            "`pix2pixhd-jax encode-features --workdir DIR` to write it anew.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "feat_num" not in meta:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise FeaturesError(f"{path}: format {found!r}, expected {FORMAT!r}; it is not a clusters file of this "
                            "project (run `pix2pixhd-jax encode-features --workdir DIR` to write one).")
    feat_num = int(meta["feat_num"])
    centers, counts = {}, {}
    for key, value in arrays.items():
        kind, _, label = key.partition("_")
        target = {"centers": centers, "counts": counts}.get(kind)
        if target is None or not label.isdigit():
            raise FeaturesError(f"{path}: unexpected array {key!r}.")
        target[int(label)] = value
    for label, c in centers.items():
        if c.ndim != 2 or c.shape[1] != feat_num:
            raise FeaturesError(f"{path}: centers of class {label} have shape {c.shape}, expected (K, {feat_num}).")
    return FeatureClusters(centers=centers, feat_num=feat_num, counts=counts, meta=meta)


def import_reference_clusters(npy_path: str, feat_num: Optional[int] = None) -> FeatureClusters:
    """The reference's features_clustered_0NN.npy: a pickled {label: (K, feat_num) centres} dict.

    Unpickling runs code from the file: import only files you trust (NVIDIA's release or your own).
    """
    try:
        obj = np.load(npy_path, allow_pickle=True, encoding="latin1")
    except (OSError, ValueError) as e:
        raise FeaturesError(f"{npy_path}: cannot read ({e}); expected the reference's features_clustered_010.npy.") \
            from None
    obj = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == () else obj
    if not isinstance(obj, dict):
        raise FeaturesError(f"{npy_path}: holds {type(obj).__name__}, expected a {{label: centres}} dict as the "
                            "reference's encode_features.py writes.")
    centers = {}
    for label, c in obj.items():
        c = np.asarray(c, np.float32)
        if c.ndim != 2 or c.shape[0] == 0:
            continue  # the reference stores nothing useful for classes without instances
        centers[int(label)] = c
    if not centers:
        raise FeaturesError(f"{npy_path}: no class has cluster centres.")
    widths = {c.shape[1] for c in centers.values()}
    if len(widths) != 1 or (feat_num is not None and widths != {feat_num}):
        raise FeaturesError(f"{npy_path}: centres have {sorted(widths)} features, the model's encoder gives "
                            f"{feat_num} (model.feat_num).")
    return FeatureClusters(centers=centers, feat_num=widths.pop(),
                           meta={"source": os.path.abspath(npy_path), "imported": True})


def instance_rows(features: np.ndarray, ids: np.ndarray):
    """(H, W, C) encoder output and (H, W) pooling ids -> (ids, mean features (N, C), pixel counts)."""
    uniq, inverse = np.unique(ids.reshape(-1), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(uniq))
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    sums = np.stack([np.bincount(inverse, weights=flat[:, c], minlength=len(uniq)) for c in range(flat.shape[1])], 1)
    return uniq, (sums / counts[:, None]).astype(np.float32), counts


def cluster_features(labels, features, areas, n_clusters: int, min_area_fraction: float = MIN_AREA_FRACTION,
                     seed: int = 0):
    """k-means per class over the instances with area fraction > min_area_fraction.

    Returns ({label: centres}, {label: counts per cluster}, per-row cluster index (-1 where dropped)).
    """
    # scikit-learn (and scipy.stats under it) loads when clusters are made, not where they are
    # only read (synthesis, the editor).
    from sklearn.cluster import KMeans

    labels, features, areas = np.asarray(labels), np.asarray(features, np.float32), np.asarray(areas)
    assignment = np.full(len(labels), -1, np.int64)
    centers, counts = {}, {}
    for label in np.unique(labels):
        rows = np.nonzero((labels == label) & (areas > min_area_fraction))[0]
        if len(rows) == 0:
            continue
        k = min(len(rows), n_clusters)
        km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(features[rows])
        centers[int(label)] = km.cluster_centers_.astype(np.float32)
        counts[int(label)] = np.bincount(km.labels_, minlength=k)
        assignment[rows] = km.labels_
    return centers, counts, assignment
