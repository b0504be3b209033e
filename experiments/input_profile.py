"""Where an example's input time goes, stage by stage, on one core (experiments/benchmarks.md "Input").

    python experiments/input_profile.py --data ../shared/data/cityscapes_samples [--repeats 3]

For the 512p config (2048x1024 Cityscapes files scaled to 1024x512, flipped), each stage of the
pipeline's per-example work timed alone over the folder's examples (median of --repeats, in
milliseconds per example): reading the three files, Pillow's PNG decoding of each, the resizes
(NEAREST for the ids, BICUBIC for the photo), the rest of `InputPipeline.process` (validation,
crop/flip, arrays), `process` as a whole; then, for the same data prepared once (`prepare-data`),
TensorFlow's PNG decoding of the 1024x512 files and the crop/flip (the prepared path's whole work).
Prints one JSON object.
"""

import argparse
import glob
import io
import json
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data import prepared
from pix2pixhd_jax.data.pipeline import InputPipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def per_example_ms(fn, items, repeats):
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) / len(items) * 1000)
    return round(statistics.median(runs), 2)


def decoded(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an aligned folder (train_label, train_inst, train_img)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    config = load_config(os.path.join(ROOT, "configs", "cityscapes_1024x512.py"),
                         ["--config.data.dataset_format=aligned", f"--config.data.dataroot={data}"])
    files = [sorted(glob.glob(os.path.join(data, f"train_{kind}", "*.png"))) for kind in ("label", "inst", "img")]
    triplets = list(zip(*files))
    raw = [tuple(open(p, "rb").read() for p in t) for t in triplets]
    images = [tuple(decoded(b) for b in r) for r in raw]
    w, h = config.data.load_size, config.data.load_size * images[0][2].size[1] // images[0][2].size[0]
    ids = [(np.asarray(lab).astype(np.int32), np.asarray(ins).astype(np.int32)) for lab, ins, _ in images]
    pipe = InputPipeline(config, "train")
    records = [{"label": r[0], "inst": r[1], "image": r[2], "label_file": t[0], "inst_file": t[1],
                "image_file": t[2], "name": os.path.basename(t[0]).encode()} for r, t in zip(raw, triplets)]
    out = {
        "read_files": per_example_ms(lambda t: [open(p, "rb").read() for p in t], triplets, args.repeats),
        "decode_label_png": per_example_ms(lambda r: decoded(r[0]), raw, args.repeats),
        "decode_instance_png": per_example_ms(lambda r: decoded(r[1]), raw, args.repeats),
        "decode_photo_png": per_example_ms(lambda r: decoded(r[2]), raw, args.repeats),
        "resize_ids_nearest_x2": per_example_ms(
            lambda p: [Image.fromarray(a, "I").resize((w, h), Image.NEAREST) for a in p], ids, args.repeats),
        "resize_photo_bicubic": per_example_ms(lambda i: i[2].convert("RGB").resize((w, h), Image.BICUBIC), images,
                                               args.repeats),
        "process_whole": per_example_ms(lambda r: pipe.process(r, 0), records, args.repeats),
    }
    stages = ("decode_label_png", "decode_instance_png", "decode_photo_png", "resize_ids_nearest_x2",
              "resize_photo_bicubic")
    out["process_rest"] = round(out["process_whole"] - sum(out[k] for k in stages), 2)

    import tensorflow as tf  # the prepared path's decoding, as the pipeline runs it

    with tempfile.TemporaryDirectory() as tmp:
        prepared.write(config, tmp, splits=("train",), progress=False)
        names = sorted(glob.glob(os.path.join(tmp, "train", "*.png")))
        by_kind = {k: [n for n in names if n.endswith(f"_{k}.png")] for k in ("label", "inst", "image")}
        blobs = [tuple(open(by_kind[k][i], "rb").read() for k in ("label", "inst", "image"))
                 for i in range(len(by_kind["image"]))]

        def tf_decode(b):
            label = tf.io.decode_png(b[0], channels=1)
            inst = tf.io.decode_png(b[1], channels=1, dtype=tf.uint16)
            photo = tf.io.decode_png(b[2], channels=3)
            return [tf.reverse(x, axis=[1]).numpy() for x in (label, inst, photo)]

        out["prepared_tf_decode_and_flip"] = per_example_ms(tf_decode, blobs, args.repeats)
        out["prepared_bytes_per_example_on_disk"] = int(np.mean([sum(len(x) for x in b) for b in blobs]))
    out["source_bytes_per_example_on_disk"] = int(np.mean([sum(len(x) for x in r) for r in raw]))
    out["examples"] = len(raw)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
