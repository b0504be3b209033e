"""bf16 against f32 compute: the same training run twice, curves and evaluation side by side.

    python experiments/bf16_curve.py --data demo/synthetic --root runs/bf16 \
        --segmenter runs/ablation/segmenter --eval-data runs/ablation/eval_scenes --out experiments/bf16

Trains configs/ablation_synthetic.py:pix2pixhd (the demo's model and 600-step budget) with
train.dtype=float32 and train.dtype=bfloat16 (parameters, optimizer state, norm statistics
and losses stay f32 in both), same seed and data; evaluates both with the ablation's segmenter
on its test scenes (experiments/ablation.py makes them); writes <out>/results.json and prints
a table of the training losses averaged over 100-step windows and the evaluation numbers.
Each stage is skipped when its output exists.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "ablation_synthetic.py") + ":pix2pixhd"
DTYPES = ("float32", "bfloat16")
CURVES = ("loss_G", "loss_G_L1", "loss_G_GAN_Feat", "loss_G_GAN", "loss_D")


def cli(*args):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def windows(workdir, width=100):
    """{metric: [(first step, last step, mean)]} from the run's metrics.jsonl (logged every 10 steps)."""
    rows = [json.loads(line) for line in open(os.path.join(workdir, "tensorboard", "metrics.jsonl"))]
    rows = {r["step"]: r for r in rows if "loss_G" in r}  # a resumed run logs some steps twice
    out = {}
    for key in CURVES:
        steps = sorted(s for s in rows if key in rows[s])
        out[key] = []
        for lo in range(0, steps[-1], width):
            vals = [rows[s][key] for s in steps if lo < s <= lo + width]
            if vals:
                out[key].append((lo + 1, lo + width, float(np.mean(vals))))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo/synthetic")
    parser.add_argument("--root", default="runs/bf16")
    parser.add_argument("--segmenter", default="runs/ablation/segmenter")
    parser.add_argument("--eval-data", default="runs/ablation/eval_scenes")
    parser.add_argument("--out", default="experiments/bf16")
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    results = {}
    for dtype in DTYPES:
        workdir = os.path.abspath(os.path.join(args.root, dtype))
        if not os.path.isfile(os.path.join(workdir, "test_results", "grid.png")):
            cli("train", "--config", CONFIG, "--workdir", workdir, f"--config.data.dataroot={os.path.abspath(args.data)}",
                f"--config.train.dtype={dtype}", "--quiet")
        metrics = os.path.join(out, f"{dtype}.json")
        if not os.path.isfile(metrics):
            cli("evaluate", "--workdir", workdir, "--segmenter", os.path.abspath(args.segmenter),
                "--dataroot", os.path.abspath(args.eval_data), "--out", metrics, "--quiet")
        evaluation = json.load(open(metrics))
        results[dtype] = {"curves": windows(workdir), "evaluation": {
            "pixel_accuracy": evaluation["segmentation"]["generated"]["pixel_accuracy"],
            "mean_iou": evaluation["segmentation"]["generated"]["mean_iou"],
            "frechet_distance_segmenter_features": evaluation["frechet_distance_segmenter_features"],
            "psnr": evaluation["paired"]["psnr"], "ssim": evaluation["paired"]["ssim"]}}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))


def table(results):
    f32, bf16 = results["float32"], results["bfloat16"]
    lines = ["| steps | " + " | ".join(f"{k} f32 / bf16" for k in CURVES) + " |",
             "| --- |" + " --- |" * len(CURVES)]
    for i, (lo, hi, _) in enumerate(f32["curves"]["loss_G"]):
        cells = [f"{f32['curves'][k][i][2]:.3f} / {bf16['curves'][k][i][2]:.3f}" for k in CURVES]
        lines.append(f"| {lo}-{hi} | " + " | ".join(cells) + " |")
    lines += ["", "| compute | pixel acc. | mean IoU | segmenter-space FD | PSNR | SSIM |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, r in (("float32", f32), ("bfloat16", bf16)):
        e = r["evaluation"]
        lines.append(f"| {name} | {e['pixel_accuracy']:.4f} | {e['mean_iou']:.4f} | "
                     f"{e['frechet_distance_segmenter_features']:.2f} | {e['psnr']:.2f} | {e['ssim']:.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
