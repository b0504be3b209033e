"""The paper's comparison (Table 1 and the ablations) on the synthetic street scenes.

    python experiments/ablation.py --data demo/synthetic --root runs/ablation --out experiments/ablation

Stages (each skipped when its output exists, so the script resumes after an interruption):
  1. make the 200 + 20 synthetic scenes at 256x128 (seed 0) if --data is empty;
  2. train every variant of configs/ablation_synthetic.py (600 steps each; pix2pixhd_vgg only
     when --vgg-weights is given, else marked as not run);
  3. train the evaluation segmenter on the real training photos (train-segmenter, the small judge
     configs/ablation_synthetic.py:segmenter_small these tables were scored by);
  4. evaluate every variant on 100 test scenes (the same generator and seed: the first 20 are the
     training folder's test split) (segmentation score on generated photos and the
     oracle on real ones, segmenter-space Frechet distance, FID/KID with --inception, PSNR/SSIM);
  5. write <out>/results.json and <out>/grid.png (label | real | each variant).
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from pix2pixhd_jax.data import visualize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = os.path.join(ROOT, "configs", "ablation_synthetic.py")
ORDER = ("pix2pix", "pix2pixhd", "pix2pixhd_gan_fm", "no_instance", "single_d", "pix2pixhd_vgg")


def cli(*args):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def done(workdir, marker):
    return os.path.exists(os.path.join(workdir, marker))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo/synthetic")
    parser.add_argument("--root", default="runs/ablation")
    parser.add_argument("--out", default="experiments/ablation")
    parser.add_argument("--vgg-weights", default="", help="VGG19 weights for the pix2pixhd_vgg variant")
    parser.add_argument("--inception", default="", help="the FID Inception weights (FID/KID)")
    parser.add_argument("--variants", default=",".join(ORDER))
    parser.add_argument("--num-test", type=int, default=100, help="test scenes to evaluate on")
    parser.add_argument("--stages", default="data,train,segmenter,evaluate,report")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    variants = [v for v in args.variants.split(",") if v]
    data = os.path.abspath(args.data)
    data_flag = f"--config.data.dataroot={data}"

    if "data" in stages and not os.path.isdir(os.path.join(data, "train_label")):
        cli("make-synthetic", "--out", data, "--num-train", "200", "--num-test", "20", "--size", "256x128",
            "--seed", "0", "--quiet")
    if "train" in stages:
        for v in variants:
            workdir = os.path.join(args.root, v)
            if v == "pix2pixhd_vgg" and not args.vgg_weights:
                print("pix2pixhd_vgg: not run (no --vgg-weights)", flush=True)
                continue
            if done(workdir, "test_results/grid.png"):
                continue
            extra = [f"--config.loss.vgg_weights={args.vgg_weights}"] if v == "pix2pixhd_vgg" else []
            cli("train", "--config", f"{CONFIG}:{v}", "--workdir", workdir, data_flag, *extra, "--quiet")
    segmenter = os.path.join(args.root, "segmenter")
    if "segmenter" in stages and not done(segmenter, "segmenter_done.json"):
        cli("train-segmenter", "--config", f"{CONFIG}:segmenter_small", "--workdir", segmenter, data_flag, "--quiet")
    results = {}
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    eval_data = os.path.join(os.path.abspath(args.root), "eval_scenes")
    if "evaluate" in stages and not os.path.isdir(os.path.join(eval_data, "test_label")):
        cli("make-synthetic", "--out", eval_data, "--num-train", "1", "--num-test", str(args.num_test), "--size",
            "256x128", "--seed", "0", "--quiet")
    if "evaluate" in stages:
        for v in variants:
            workdir = os.path.join(args.root, v)
            if not done(workdir, "checkpoints"):
                continue
            metrics = os.path.join(out, f"{v}.json")
            if not os.path.isfile(metrics):
                extra = ["--inception", args.inception] if args.inception else []
                cli("evaluate", "--workdir", workdir, "--segmenter", segmenter, "--dataroot", eval_data,
                    "--out", metrics, "--samples-dir", os.path.join(workdir, "eval_samples"), *extra, "--quiet")
    if "report" in stages:
        for v in ORDER:
            path = os.path.join(out, f"{v}.json")
            results[v] = json.load(open(path)) if os.path.isfile(path) else None
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        write_grid(args.root, eval_data, [v for v in ORDER if results.get(v)], os.path.join(out, "grid.jpg"))
        print(table(results))


def write_grid(root, data, variants, path, rows=4):
    names = sorted(os.listdir(os.path.join(data, "test_label")))[:rows]
    grid = []
    for name in names:
        stem = os.path.splitext(name)[0]
        label = np.asarray(Image.open(os.path.join(data, "test_label", name)))
        row = [visualize.colorize_labels(label), np.asarray(Image.open(os.path.join(data, "test_img", name)).convert("RGB"))]
        for v in variants:
            row.append(np.asarray(Image.open(os.path.join(root, v, "eval_samples", f"{stem}.png")).convert("RGB")))
        grid.append(row)
    Image.fromarray(visualize.grid(grid)).save(path, quality=90)


def table(results):
    lines = ["| variant | pixel acc. | mean IoU | segmenter-space FD | PSNR | SSIM |", "| --- | --- | --- | --- | --- | --- |"]
    oracle = next((r for r in results.values() if r), None)
    if oracle:
        o = oracle["segmentation"]["real"]
        lines.append(f"| oracle (real photos) | {o['pixel_accuracy']:.4f} | {o['mean_iou']:.4f} | 0 | | |")
    for v, r in results.items():
        if not r:
            lines.append(f"| {v} | not run | | | | |")
            continue
        g = r["segmentation"]["generated"]
        lines.append(f"| {v} | {g['pixel_accuracy']:.4f} | {g['mean_iou']:.4f} | "
                     f"{r['frechet_distance_segmenter_features']:.2f} | {r['paired']['psnr']:.2f} | "
                     f"{r['paired']['ssim']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
