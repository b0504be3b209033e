"""Train on the six real Cityscapes triplets in ../shared and picture the result.

    python experiments/cityscapes_samples.py --workdir runs/cityscapes_samples --out docs/cityscapes_samples.jpg

Trains configs/cityscapes_samples.py (unless the workdir already holds its last checkpoint),
then synthesizes each of the six label maps at the training size (label and instance maps
downscaled with nearest-neighbour, as the pipeline does) and writes label | synthesized | real.
"""

import argparse
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from pix2pixhd_jax.data import visualize
from pix2pixhd_jax.inference.synthesis import Synthesizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(os.path.dirname(ROOT), "shared", "data", "cityscapes_samples")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/cityscapes_samples")
    parser.add_argument("--data", default=SAMPLES)
    parser.add_argument("--out", default="docs/cityscapes_samples.jpg")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.data, "train_label")):
        sys.exit(f"{args.data}: the Cityscapes samples are not there (they live in ../shared/data).")
    if not os.path.isfile(os.path.join(args.workdir, "samples", "latest.png")):
        subprocess.run([sys.executable, "-m", "pix2pixhd_jax.cli", "train", "--config",
                        os.path.join(ROOT, "configs", "cityscapes_samples.py"), "--workdir", args.workdir,
                        f"--config.data.dataroot={os.path.abspath(args.data)}", "--quiet"], cwd=ROOT, check=True)


    synth = Synthesizer.from_workdir(args.workdir)
    width = int(synth.config.data.load_size)
    rows = []
    for name in sorted(os.listdir(os.path.join(args.data, "train_label"))):
        scene = name.replace("_gtFine_labelIds.png", "")
        label = Image.open(os.path.join(args.data, "train_label", name))
        size = (width, round(label.height * width / label.width))
        label = np.asarray(label.resize(size, Image.NEAREST))
        inst = np.asarray(Image.open(os.path.join(args.data, "train_inst", f"{scene}_gtFine_instanceIds.png"))
                          .resize(size, Image.NEAREST)).astype(np.int32)
        real = np.asarray(Image.open(os.path.join(args.data, "train_img", f"{scene}_leftImg8bit.png"))
                          .convert("RGB").resize(size, Image.BICUBIC))
        rows.append([visualize.colorize_labels(label), synth.synthesize(label, inst), real])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Image.fromarray(visualize.grid(rows)).save(args.out, quality=88)
    print(f"label | synthesized | real for {len(rows)} scenes written to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
