"""Instance maps made from Cityscapes label maps (`make-instances`) against the true instanceIds.

    python experiments/make_instances_cityscapes.py [--samples ../shared/data/cityscapes_samples] \
        [--out experiments/make_instances_cityscapes.json]

For every sample: the true objects of thing classes (instance ids class*1000+k, plus the
"group" regions Cityscapes labels with the bare class id), the objects made from the label map
alone, how many true objects were merged with another one (they touch, so the label map
shows one region) and how many were cut into several (an occluder splits them). Prints one JSON
object and writes it to --out.
"""

import argparse
import json
import os

import numpy as np
from PIL import Image

from pix2pixhd_jax import atomic
from pix2pixhd_jax.data import instances

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=os.path.join(os.path.dirname(ROOT), "shared", "data",
                                                          "cityscapes_samples"))
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "make_instances_cityscapes.json"))
    args = parser.parse_args()
    things = instances.THINGS["cityscapes"]
    rows = []
    for label_file in sorted(os.listdir(os.path.join(args.samples, "train_label"))):
        key = label_file.replace("_gtFine_labelIds.png", "")
        label = np.asarray(Image.open(os.path.join(args.samples, "train_label", label_file))).astype(np.int32)
        true = np.asarray(Image.open(os.path.join(args.samples, "train_inst", f"{key}_gtFine_instanceIds.png")))
        true = true.astype(np.int32)
        made = instances.instances_from_labels(label, things)
        row = {"scene": key, **instances.compare(made, true, label, things)}
        row["true_groups"] = int(len(np.unique(true[np.isin(label, list(things)) & (true < 1000)])))
        rows.append(row)
    total = {k: sum(r[k] for r in rows) for k in ("true_objects", "made_objects", "merged_true_objects",
                                                   "split_true_objects", "true_groups")}
    for kind in ("merged", "split"):
        total[f"{kind}_fraction"] = round(total[f"{kind}_true_objects"] / max(total["true_objects"], 1), 4)
    result = {"samples": args.samples, "scenes": rows, "total": total}
    atomic.write_json(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
