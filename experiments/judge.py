"""The evaluation segmenter (the judge) on the synthetic scenes: what each training choice buys.

    python experiments/judge.py --data demo/synthetic --root runs/judge --out experiments/judge

Each step adds one choice to the one before it, from the small judge the first comparison used
(configs/ablation_synthetic.py:segmenter_small) to the judge the comparison uses now
(configs/ablation_synthetic.py:segmenter); every judge is trained with `train-segmenter` on the
200 training scenes' real photos and scored with `evaluate-segmenter` on the real photos of the
100 held-out scenes (`make-synthetic --num-train 1 --num-test 100 --size 256x128 --seed 0`, the
scenes the comparison is scored on). Stages resume: a judge whose workdir has
segmenter_done.json is not trained again, a score already written is not measured again.

Writes <out>/<step>.json (evaluate-segmenter's JSON plus the training time) and <out>/results.json,
and prints the table experiments/README.md quotes (mean IoU, pixel accuracy, the worst present
class, per class IoU).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "ablation_synthetic.py")

from pix2pixhd_jax.data.synthetic import CLASS_IDS

# (name, what it adds, config variant, overrides); each row keeps the rows above it.
STEPS = (
    ("small", "the first comparison's judge: width 16, 800 steps, batch 4, 128x128 crops", "segmenter_small", ()),
    ("weighted", "+ median-frequency class weights", "segmenter_small",
     ("--config.segmenter.class_weighting=median_frequency",)),
    ("wide", "+ width 32", "segmenter_small",
     ("--config.segmenter.class_weighting=median_frequency", "--config.segmenter.width=32")),
    ("long", "+ 3000 steps (the judge of the comparison)", "segmenter", ()),
)


def cli(*args):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def eval_scenes(root):
    path = os.path.join(os.path.abspath(root), "eval_scenes")
    if not os.path.isdir(os.path.join(path, "test_label")):
        cli("make-synthetic", "--out", path, "--num-train", "1", "--num-test", "100", "--size", "256x128",
            "--seed", "0", "--quiet")
    return path


def table(results):
    names = {str(i): n for n, i in CLASS_IDS.items()}
    rows = [r for r in results.values() if r]
    ids = sorted({c for r in rows for c in r["classes_present"]})
    head = "| judge | train time | mean IoU | pixel acc. | worst class | " + " | ".join(names[str(c)] for c in ids) + " |"
    lines = [head, "| " + " | ".join(["---"] * (5 + len(ids))) + " |"]
    for step, what, _, _ in STEPS:
        r = results.get(step)
        if not r:
            lines.append(f"| {step}: {what} | not run |" + " |" * (3 + len(ids)))
            continue
        iou = r["per_class_iou"]
        present = {str(c): iou.get(str(c), 0.0) for c in r["classes_present"]}
        worst = min(present, key=present.get)
        minutes = f"{r['train_seconds'] / 60:.0f} min" if r.get("train_seconds") else "?"
        lines.append(f"| {step}: {what} | {minutes} | {r['mean_iou']:.4f} | "
                     f"{r['pixel_accuracy']:.4f} | {names[worst]} {present[worst]:.3f} | "
                     + " | ".join(f"{iou.get(str(c), 0.0):.3f}" for c in ids) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo/synthetic", help="the 200 + 20 training scenes (make demo's)")
    parser.add_argument("--root", default="runs/judge")
    parser.add_argument("--out", default="experiments/judge")
    parser.add_argument("--steps", default=",".join(s[0] for s in STEPS))
    args = parser.parse_args()
    wanted = [s for s in args.steps.split(",") if s]
    data = os.path.abspath(args.data)
    if not os.path.isdir(os.path.join(data, "train_label")):
        cli("make-synthetic", "--out", data, "--num-train", "200", "--num-test", "20", "--size", "256x128",
            "--seed", "0", "--quiet")
    scenes = eval_scenes(args.root)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    results = {}
    for step, what, variant, overrides in STEPS:
        path = os.path.join(out, f"{step}.json")
        if step in wanted and not os.path.isfile(path):
            workdir = os.path.join(os.path.abspath(args.root), step)
            timing = os.path.join(workdir, "train_seconds.json")
            if not os.path.isfile(os.path.join(workdir, "segmenter_done.json")):
                start = time.time()
                cli("train-segmenter", "--config", f"{CONFIG}:{variant}", "--workdir", workdir,
                    f"--config.data.dataroot={data}", *overrides, "--quiet")
                # The time of the last (uninterrupted) stretch of training.
                with open(timing, "w") as f:
                    json.dump({"seconds": time.time() - start}, f)
            cli("evaluate-segmenter", "--segmenter", workdir, "--dataroot", scenes, "--out", path, "--quiet")
            result = json.load(open(path))
            result.update(step=step, adds=what, variant=variant, overrides=list(overrides),
                          train_seconds=json.load(open(timing))["seconds"] if os.path.isfile(timing) else None)
            with open(path, "w") as f:
                json.dump(result, f, indent=2)
        results[step] = json.load(open(path)) if os.path.isfile(path) else None
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(table(results))


if __name__ == "__main__":
    main()
