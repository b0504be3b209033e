"""pix2pix, pix2pixHD and OASIS, scored by a judge worth trusting (the paper's Table 1, small).

    python experiments/paper_comparison.py --data demo/synthetic --root runs/paper_comparison \
        --judge runs/judge/long --eval-data runs/judge/eval_scenes --out experiments/paper_comparison

Stages (each skipped when its output exists; a run stopped part way resumes from its newest
checkpoint, since `train` does):
  1. the 200 + 20 training scenes at 256x128 (seed 0) if --data is empty, and the 100 held-out
     scenes (`make-synthetic --num-train 1 --num-test 100 --size 256x128 --seed 0`);
  2. the judge (`train-segmenter --config configs/ablation_synthetic.py:segmenter`) if --judge
     has none; experiments/judge.py trains the same one and says what its settings buy;
  3. each method of --methods (configs/paper_comparison.py: pix2pix and pix2pixHD by default; OASIS
     and its ablations with --methods oasis,oasis_no_ema,oasis_no_labelmix,...), 2400 steps, the
     judge scoring it on the held-out scenes every 300 steps (train.eval_every: eval/* in its
     metrics.jsonl and TensorBoard);
  4. the judge on every kept checkpoint at a multiple of train.eval_every that the run's
     metrics.jsonl has no score for (a run trained before its judge existed, `--stages data,train`
     beside `train-segmenter`): <run>/scores/<step>.json; and for oasis_no_ema the OASIS run's own G
     at every such step (<run of oasis>/scores_raw/), so the curves show what the average buys;
  5. `evaluate` of each final model with the judge on the held-out scenes: <out>/<method>.json
     (and oasis_no_ema: the OASIS run's own G rather than its moving average);
  6. <out>/curves.png (mean IoU and pixel accuracy over steps, the oracle as a line),
     <out>/grid.jpg (label | real | each method, the first held-out scenes), <out>/results.json
     (the curves and the final scores) and the tables experiments/README.md quotes. A run folder
     can go once reported: its curve stays in results.json and its grid pictures in
     <out>/samples/<method>/ (JPEG, as the grid is), and the next report takes them from there.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # configs/ is a folder of the project, not of the installed package

from configs.paper_comparison import METHODS as TRAINED  # the runs trained: one config each
from pix2pixhd_jax import atomic
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data import visualize
from pix2pixhd_jax.data.synthetic import CLASS_IDS

METHODS = TRAINED + ("oasis_no_ema",)
DEFAULT_METHODS = ("pix2pix", "pix2pixhd", "pix2pixhd_gan_fm")
LABELS = {"pix2pix": "pix2pix (U-Net, PatchGAN, BCE + 100 L1)",
          "pix2pixhd": "pix2pixHD (demo: LSGAN + FM + 10 L1)",
          "pix2pixhd_gan_fm": "pix2pixHD, GAN + FM only",
          "oasis": "OASIS ((N+1) loss, LabelMix, 3D noise, moving average)",
          "oasis_no_labelmix": "OASIS without LabelMix",
          "oasis_no_noise": "OASIS without 3D noise",
          "oasis_no_balancing": "OASIS without class balancing",
          "oasis_patch_d": "OASIS's G with pix2pixHD's D (LSGAN + FM)",
          "oasis_ema_995": "OASIS, moving average at decay 0.995",
          "oasis_ema_995_seed1": "OASIS, moving average at decay 0.995, seed 1",
          "oasis_no_ema": "OASIS's G itself, not its moving average"}
CONFIG = os.path.join(ROOT, "configs", "paper_comparison.py")
JUDGE_CONFIG = os.path.join(ROOT, "configs", "ablation_synthetic.py")


def cli(*args):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def make_scenes(data, eval_data):
    """The 200 + 20 training scenes and the 100 held-out scenes, each made if its folder is empty."""
    if not os.path.isdir(os.path.join(data, "train_label")):
        cli("make-synthetic", "--out", data, "--num-train", "200", "--num-test", "20", "--size", "256x128",
            "--seed", "0", "--quiet")
    if not os.path.isdir(os.path.join(eval_data, "test_label")):
        cli("make-synthetic", "--out", eval_data, "--num-train", "1", "--num-test", "100", "--size", "256x128",
            "--seed", "0", "--quiet")


def trained_run(method):
    """The run a method's scores come from: oasis_no_ema is the OASIS run's own G."""
    return "oasis" if method == "oasis_no_ema" else method


def judge_finished(judge):
    return os.path.isfile(os.path.join(judge, "segmenter_done.json"))


def train_judge(judge, data):
    """The judge (configs/ablation_synthetic.py:segmenter), trained if `judge` has none."""
    if not judge_finished(judge):
        cli("train-segmenter", "--config", f"{JUDGE_CONFIG}:segmenter", "--workdir", judge,
            f"--config.data.dataroot={data}", "--quiet")


def trained_generator(root):
    """The OASIS run's own G (not its moving average) as a workdir of imported models, so that
    `evaluate` scores what the average buys."""
    from pix2pixhd_jax import checkpoint

    src, dst = os.path.join(root, "oasis"), os.path.join(root, "oasis_no_ema")
    if checkpoint.latest_step(dst, "models") is None:
        step = checkpoint.latest_step(src, "state")
        variables = checkpoint.load_network_params(src, discriminator=True)
        checkpoint.save_models(dst, step, {"generator": variables["generator"]}, checkpoint.read_config(src))
    return dst


def curve(workdir, scores="scores"):
    """{step: {eval/...}} from a run's metrics.jsonl (the last record of a step: a resumed run
    repeats the steps after its last checkpoint) and the steps the score stage scored afterwards
    (<workdir>/<scores>/<step>.json)."""
    path = os.path.join(workdir, "tensorboard", "metrics.jsonl")
    points = {}
    if os.path.isfile(path) and scores == "scores":
        for line in open(path):
            rec = json.loads(line)
            if "eval/mean_iou" in rec:
                points[int(rec["step"])] = {k: v for k, v in rec.items() if k.startswith("eval/")}
    folder = os.path.join(workdir, scores)
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith(".json"):
                points.setdefault(int(name[:-5]), json.load(open(os.path.join(folder, name)))["scalars"])
    return dict(sorted(points.items()))


def score_kept(workdir, every, judge, eval_data, own_g=False):
    """The judge on each kept training state at a multiple of `every` (the comparison's
    train.eval_every) that the run has no score for: <workdir>/scores/<step>.json, or with own_g
    the run's own G rather than its moving average (<workdir>/scores_raw/). Scored as
    train.eval_every scores (Evaluation.run, one sample per map, the 'auto' style), so a curve
    mixes both kinds of point without a seam."""
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.evaluation.evaluate import Evaluation, scalars
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    folder = "scores_raw" if own_g else "scores"
    config = checkpoint.read_config(workdir)
    done = curve(workdir, folder)
    todo = [s for s in checkpoint.steps(workdir, "state")
            if s % every == 0 and s not in done]
    if not todo:
        return
    evaluation, synth = Evaluation(config, judge, "test", eval_data), None
    for step in todo:
        parts = ("g_params", "g_stats") if own_g else checkpoint.GENERATOR_PARTS["state"]
        saved = checkpoint.restore_to_host(workdir, step, "state", parts)
        g = (saved["g_params"], saved["g_stats"]) if own_g else checkpoint.inference_generator(saved)
        variables = checkpoint.network_variables(*g)
        if synth is None:
            synth = Synthesizer(config, variables)
        else:
            synth.set_variables(variables)
        result = evaluation.run(synth, "auto", 1, None, False)
        result.update(workdir=workdir, step=step, generator="own" if own_g else "inference", scalars=scalars(result))
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)
        atomic.write_json(os.path.join(workdir, folder, f"{step}.json"), result)
        print(f"{os.path.basename(workdir)}{' (own G)' if own_g else ''} step {step}: "
              f"mean IoU {result['scalars']['eval/mean_iou']:.4f}", flush=True)


def plot_curves(curves, path):
    import matplotlib  # the experiments extra: pip install -e .[experiments]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    oracle = None
    for method, points in curves.items():
        if not points:
            continue
        steps = list(points)
        for ax, key in zip(axes, ("eval/mean_iou", "eval/pixel_accuracy")):
            ax.plot(steps, [points[s][key] for s in steps], marker="o", label=LABELS[method])
        oracle = oracle or points[steps[-1]]
    for ax, key, title in zip(axes, ("eval/oracle_mean_iou", "eval/oracle_pixel_accuracy"),
                              ("mean IoU", "pixel accuracy")):
        if oracle:
            ax.axhline(oracle[key], color="grey", linestyle="--", label="real photos (oracle)")
        ax.set_xlabel("training step")
        ax.set_title(f"judge's {title} on 100 held-out scenes")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def keep_samples(root, data, methods, out, rows=4):
    """The pictures the grid shows of each method (its `evaluate` samples of the first `rows`
    held-out scenes) copied into <out>/samples/<method>/ while its run folder has them."""
    for m in methods:
        folder = os.path.join(root, m, "eval_samples")
        if not os.path.isdir(folder):
            continue
        os.makedirs(os.path.join(out, "samples", m), exist_ok=True)
        for stem in grid_scenes(data, rows):
            Image.open(os.path.join(folder, f"{stem}.png")).convert("RGB").save(
                os.path.join(out, "samples", m, f"{stem}.jpg"), quality=95)


def grid_scenes(data, rows):
    return [os.path.splitext(n)[0] for n in sorted(os.listdir(os.path.join(data, "test_label")))[:rows]]


def write_grid(data, methods, out, path, rows=4):
    """label | real | each method with kept pictures (keep_samples), the first `rows` held-out
    scenes; returns the methods left out for want of pictures."""
    shown = [m for m in methods if os.path.isdir(os.path.join(out, "samples", m))]
    grid = []
    for stem in grid_scenes(data, rows):
        row = [visualize.colorize_labels(np.asarray(Image.open(os.path.join(data, "test_label", f"{stem}.png")))),
               np.asarray(Image.open(os.path.join(data, "test_img", f"{stem}.png")).convert("RGB"))]
        row += [np.asarray(Image.open(os.path.join(out, "samples", m, f"{stem}.jpg"))) for m in shown]
        grid.append(row)
    Image.fromarray(visualize.grid(grid)).save(path, quality=90)
    return [m for m in methods if m not in shown]


def kept_curves(out):
    """The curves the last report wrote (<out>/results.json): all that is left of a run whose folder
    is gone."""
    path = os.path.join(out, "results.json")
    if not os.path.isfile(path):
        return {}
    return {m: {int(s): v for s, v in c.items()} for m, c in json.load(open(path))["curves"].items()}


def gather_curves(root, out):
    """Each method's curve from its run folder, or as the last report kept it where the folder is gone."""
    kept = kept_curves(out)
    curves = {}
    for m in METHODS:
        workdir = os.path.join(root, trained_run(m))
        if os.path.isdir(workdir):
            curves[m] = curve(workdir, "scores_raw" if m == "oasis_no_ema" else "scores")
        else:
            curves[m] = kept.get(m, {})
    return curves


def tables(finals, curves):
    names = {str(i): n for n, i in CLASS_IDS.items()}
    done = {m: r for m, r in finals.items() if r}
    if not done:
        return "no method evaluated yet (the runs go on: `train` resumes them)\n\n" + curve_table(curves)
    any_result = next(iter(done.values()))
    oracle = any_result["segmentation"]["real"]
    lines = ["| method | steps | pixel acc. | mean IoU | segmenter-space FD | PSNR | SSIM |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| real photos (oracle) | | {oracle['pixel_accuracy']:.4f} | {oracle['mean_iou']:.4f} | 0 | | |"]
    for m in METHODS:
        r = done.get(m)
        if not r:
            continue
        g = r["segmentation"]["generated"]
        steps = max(curves.get(trained_run(m)) or {0: None})
        lines.append(f"| {LABELS[m]} | {steps} | {g['pixel_accuracy']:.4f} | {g['mean_iou']:.4f} | "
                     f"{r['frechet_distance_segmenter_features']:.2f} | {r['paired']['psnr']:.2f} | "
                     f"{r['paired']['ssim']:.4f} |")
    ids = sorted({int(c) for r in done.values() for c in r["segmentation"]["real"]["per_class_iou"]})
    lines += ["", "| class | real | " + " | ".join(m for m in METHODS if m in done) + " |",
              "| --- | --- | " + " | ".join("---" for m in METHODS if m in done) + " |"]
    for c in ids:
        cells = [f"{oracle['per_class_iou'].get(str(c), 0.0):.3f}"]
        cells += [f"{done[m]['segmentation']['generated']['per_class_iou'].get(str(c), 0.0):.3f}"
                  for m in METHODS if m in done]
        lines.append(f"| {names.get(str(c), c)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + curve_table(curves)


def curve_table(curves):
    """The judge's mean IoU / pixel accuracy of each method at each scored step."""
    scored = [m for m in METHODS if curves.get(m)]
    lines = ["| step | " + " | ".join(f"{m} mean IoU / pixel acc." for m in scored) + " |",
             "| --- | " + " | ".join("---" for _ in scored) + " |"]
    for step in sorted({s for c in curves.values() for s in c}):
        cells = [f"{curves[m][step]['eval/mean_iou']:.4f} / {curves[m][step]['eval/pixel_accuracy']:.4f}"
                 if step in curves[m] else "" for m in scored]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo/synthetic")
    parser.add_argument("--root", default="runs/paper_comparison")
    parser.add_argument("--judge", default="runs/judge/long", help="a train-segmenter workdir (trained if empty)")
    parser.add_argument("--eval-data", default="runs/judge/eval_scenes", help="the held-out scenes (made if empty)")
    parser.add_argument("--out", default="experiments/paper_comparison")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated, of " + ", ".join(METHODS))
    parser.add_argument("--stages", default="data,judge,train,score,evaluate,report")
    args = parser.parse_args()
    stages = set(args.stages.split(","))
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods {','.join(unknown)}: not one of {', '.join(METHODS)}")
    data, judge, eval_data = (os.path.abspath(p) for p in (args.data, args.judge, args.eval_data))
    root, out = os.path.abspath(args.root), os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)

    if "data" in stages:
        make_scenes(data, eval_data)
    if "judge" in stages:
        train_judge(judge, data)
    if "train" in stages:
        for m in (m for m in methods if m in TRAINED):
            workdir = os.path.join(root, m)
            if os.path.isfile(os.path.join(workdir, "test_results", "grid.png")):
                continue
            if judge_finished(judge):
                scoring = [f"--config.train.eval_segmenter={judge}", f"--config.train.eval_dataroot={eval_data}"]
            else:
                print(f"{judge}: no finished judge yet; {m} trains without scoring and the score stage scores its "
                      "kept checkpoints", flush=True)
                scoring = ["--config.train.eval_every=0"]
            cli("train", "--config", f"{CONFIG}:{m}", "--workdir", workdir, f"--config.data.dataroot={data}",
                *scoring, "--quiet")
    if "score" in stages:
        for m in methods:
            trained = os.path.join(root, trained_run(m))
            if os.path.isdir(trained):
                every = load_config(f"{CONFIG}:{trained_run(m)}").train.eval_every
                score_kept(trained, every, judge, eval_data, own_g=m == "oasis_no_ema")
    if "evaluate" in stages:
        for m in methods:
            workdir, path = os.path.join(root, m), os.path.join(out, f"{m}.json")
            trained = os.path.join(root, trained_run(m))
            if os.path.isfile(os.path.join(trained, "test_results", "grid.png")) and not os.path.isfile(path):
                if m == "oasis_no_ema":
                    trained_generator(root)
                cli("evaluate", "--workdir", workdir, "--segmenter", judge, "--dataroot", eval_data, "--out", path,
                    "--samples-dir", os.path.join(workdir, "eval_samples"), "--quiet")
    if "report" in stages:
        report(root, eval_data, out)


def report(root, eval_data, out):
    """results.json, curves.png, grid.jpg and the tables, from the run folders and what earlier
    reports kept of runs whose folders are gone."""
    finals = {m: json.load(open(os.path.join(out, f"{m}.json"))) if os.path.isfile(os.path.join(out, f"{m}.json"))
              else None for m in METHODS}
    curves = gather_curves(root, out)
    atomic.write_json(os.path.join(out, "results.json"), {
        "curves": curves,
        "final": {m: (r and {k: r[k] for k in ("segmentation", "paired", "frechet_distance_segmenter_features",
                                               "num_images")}) for m, r in finals.items()}}, indent=1)
    plot_curves(curves, os.path.join(out, "curves.png"))
    evaluated = [m for m in METHODS if finals[m]]
    if evaluated:
        keep_samples(root, eval_data, evaluated, out)
        missing = write_grid(eval_data, evaluated, out, os.path.join(out, "grid.jpg"))
        if missing:
            print(f"grid.jpg leaves out {', '.join(missing)}: evaluated, but neither their run folders' "
                  f"eval_samples nor {os.path.join(out, 'samples')} have their pictures", flush=True)
    print(tables(finals, curves))


if __name__ == "__main__":
    main()
