"""Trains like NVIDIA's code: both implementations trained the same way, several seeds, one judge.

    python experiments/reference_training.py --ref /tmp/pix2pixHD --data demo/synthetic \\
        --root runs/reference_training --eval-data runs/judge/eval_scenes \\
        --out experiments/reference_training --seeds 0,1,2 --vgg-seeds 0

--ref is a checkout of https://github.com/NVIDIA/pix2pixHD (never kept in this project);
experiments/nvidia_reference.py runs its own train.py with the changes a CPU needs, applied at run
time and listed in its CPU_CHANGES (repeated in results.json). For every variant of
configs/reference_training.py (gan_fm: the comparison's pix2pixHD with GAN + feature matching;
vgg: the same plus the VGG term, both sides reading one file of random VGG19 weights) and seed K:

  1. the scenes and the judge, as experiments/paper_comparison.py makes them (skipped when there);
  2. the reference's initial G and D, built by its define_G / define_D after torch.manual_seed(K)
     (<root>/init/<run>); imported into this project with `import-torch` (<root>/ours_init/<run>),
     so both sides start from the same weights (step 0 is scored on both: the same pictures);
  3. both trainings, side by side: `pix2pixhd-jax train` from those weights (train.init_from,
     config seed K: data order, crops and flips) into <root>/ours/<run>, and the reference's
     train.py from them (--load_pretrain; python/numpy/torch seeded with K) into <root>/reference/<run>;
     each resumes from its newest checkpoint when run again;
  4. the judge scores G every 300 steps on the 100 held-out scenes, on both sides with this
     project's evaluation (evaluation.evaluate.Evaluation, as `evaluate` and train.eval_every do):
     ours from its checkpoints, the reference's own pixels from its per-epoch saves through its
     test path (<root>/<side>/<run>/scores/<step>.json);
  5. <out>/ours_seed<K>.json (`evaluate` of the final model) and <out>/reference_seed<K>.json (the
     same scores of the reference's final G), `_vgg` in the names for the vgg variant;
  6. <out>/runs/<side>_<run>.json (one run's scores per scored step and losses per 300 steps: the
     record kept of a run whose folder is not), <out>/results.json (every seed's scores at every
     scored step, the means and spreads, the losses of both sides per 300 steps), <out>/curves.png,
     <out>/grid.jpg (label | real | ours | reference, seed 0, final step; grid_vgg.jpg for vgg) and
     the tables experiments/README.md quotes.

Stages already done are skipped, so the same command resumes a stopped experiment. The report reads
every run's folder under --root where there is one and its kept record otherwise, so seeds trained
on different machines or at different times report together, provided one judge scored them all:
the digest of the judge's parameters is in every score, and the report refuses to pool runs scored
by different judges. `train-segmenter` run again on the same scenes with the same seed does not give
the same judge (0.8674 against 0.8715 mean IoU on the 100 held-out scenes' photos), so the judge is
kept with the project: experiments/reference_training/judge (`export-segmenter` of the one trained
by `prepare`; 7.4 MiB), the default --judge.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

import nvidia_reference
import paper_comparison
from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.data import visualize

ROOT = paper_comparison.ROOT
CONFIG = os.path.join(ROOT, "configs", "reference_training.py")
SIDES = ("ours", "reference")
KEYS = (("eval/mean_iou", "mean IoU"), ("eval/pixel_accuracy", "pixel acc."),
        ("eval/frechet_distance_segmenter", "segmenter-space FD"), ("eval/psnr", "PSNR"), ("eval/ssim", "SSIM"))
LOSSES = ("G_GAN", "G_GAN_Feat", "G_VGG", "D_real", "D_fake")
# What is not the same on the two sides, by design of this comparison (results.json repeats it).
DIFFERENCES = (
    "data order: ours shuffles each epoch by (seed, epoch) with numpy; the reference's DataLoader shuffles "
    "with torch's generator (seeded with the run's seed)",
    "crops and flips: ours draws them per (seed, epoch, scene); the reference with python's random in its "
    "get_params (seeded with the run's seed)",
    "no dropout (global G) and no image pool (pool_size 0) on either side, so no other random numbers",
    "pixels: both sides truncate to uint8 after clipping (util.tensor2im, data.pixels.to_levels)",
)


def run_name(variant, seed):
    return f"{variant}_seed{seed}"


def out_name(side, variant, seed):
    return f"{side}_seed{seed}.json" if variant == "gan_fm" else f"{side}_{variant}_seed{seed}.json"


def reference_saved(run_dir, epoch):
    """Whether the reference's save at the end of `epoch` is complete: train.py writes iter.txt
    (the epoch to resume from) after the epoch's G and D."""
    path = os.path.join(run_dir, "iter.txt")
    return os.path.isfile(path) and int(np.loadtxt(path, delimiter=",", dtype=int)[0]) > epoch


def step0_pixels(exp, variant, seed):
    """How equal the two sides' step-0 pictures of the held-out scenes are (uint8 values)."""
    d = exp.dirs(variant, seed)
    folders = [os.path.join(d[side], "eval_samples_step0") for side in SIDES]
    if not all(os.path.isdir(f) for f in folders):
        return None
    diffs = np.concatenate([np.abs(np.asarray(Image.open(os.path.join(folders[0], n)), np.int16)
                                   - np.asarray(Image.open(os.path.join(folders[1], n)), np.int16)).ravel()
                            for n in sorted(os.listdir(folders[0]))])
    return {"values": int(diffs.size), "equal": float(np.mean(diffs == 0)), "max_difference": int(diffs.max())}


class Experiment:
    def __init__(self, args):
        self.args = args
        self.root = os.path.abspath(args.root)
        self.out = os.path.abspath(args.out)
        self.data, self.judge, self.eval_data = (os.path.abspath(p) for p in (args.data, args.judge, args.eval_data))
        self.vgg_weights = os.path.join(self.root, "vgg19_random.pth")

    # ----- paths and configs -----
    def overrides(self, variant, seed):
        out = [f"seed={seed}", f"data.dataroot={self.data}"]
        out += [f"loss.vgg_weights={self.vgg_weights}"] if variant == "vgg" else []
        return out + self.args.override

    def override_flags(self):
        return [f for o in self.args.override for f in ("--override", o)]

    def config(self, variant, seed):
        return load_config(f"{CONFIG}:{variant}", self.overrides(variant, seed))

    def dirs(self, variant, seed):
        run = run_name(variant, seed)
        return {k: os.path.join(self.root, k, run) for k in ("init", "ours_init", "ours", "reference")}

    def steps(self, config):
        per_epoch = nvidia_reference.count_examples(self.data) // config.train.batch_size
        total = (config.train.niter + config.train.niter_decay) * per_epoch
        return per_epoch, list(range(0, total + 1, config.train.save_latest_freq))

    # ----- running things -----
    def run(self, cmd, log=None, wait=True):
        print("+", " ".join(cmd), flush=True)
        if log:
            os.makedirs(os.path.dirname(log), exist_ok=True)
        out = open(log, "a") if log else None
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out or None, stderr=subprocess.STDOUT if out else None)
        if self.args.pids:
            with open(self.args.pids, "a") as f:
                f.write(f"{proc.pid}\n")
        if wait:
            if proc.wait():
                raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else ""))
        return proc

    def cli(self, *args, **kwargs):
        return self.run([sys.executable, "-m", "pix2pixhd_jax.cli", *args], **kwargs)

    def reference_tool(self, command, *args, **kwargs):
        tool = os.path.join(ROOT, "experiments", "nvidia_reference.py")
        return self.run([sys.executable, tool, command, "--ref", self.args.ref, "--stubs", self.args.stubs, *args],
                        **kwargs)

    # ----- stages -----
    def prepare(self, variants):
        paper_comparison.make_scenes(self.data, self.eval_data)
        paper_comparison.train_judge(self.judge, self.data)
        if "vgg" in variants and not os.path.isfile(self.vgg_weights):
            self.reference_tool("vgg19", "--out", self.vgg_weights)

    def initial_weights(self, variant, seed):
        d = self.dirs(variant, seed)
        flags = ["--config", f"{CONFIG}:{variant}", "--seed", str(seed)] + self.override_flags()
        if not os.path.isfile(os.path.join(d["init"], "latest_net_D.pth")):
            self.reference_tool("init", *flags, "--out", d["init"], log=d["init"] + ".log")
        if checkpoint.latest_step(d["ours_init"], "models") is None:
            self.cli("import-torch", "--config", f"{CONFIG}:{variant}", "--workdir", d["ours_init"],
                     "--netG", os.path.join(d["init"], "latest_net_G.pth"),
                     "--netD", os.path.join(d["init"], "latest_net_D.pth"), "--step", "0",
                     *[f"--config.{o}" for o in self.overrides(variant, seed)])

    def train(self, variant, seed):
        """Both sides, side by side; each is skipped when finished and resumes when stopped."""
        d, config = self.dirs(variant, seed), self.config(variant, seed)
        per_epoch, steps = self.steps(config)
        procs = []
        sides = self.args.sides.split(",")
        if "ours" in sides and checkpoint.latest_step(d["ours"], "state") != steps[-1]:
            procs.append(self.cli("train", "--config", f"{CONFIG}:{variant}", "--workdir", d["ours"], "--no-test",
                                  "--quiet", f"--config.train.init_from={d['ours_init']}",
                                  *[f"--config.{o}" for o in self.overrides(variant, seed)],
                                  log=d["ours"] + ".log", wait=not self.args.side_by_side))
        if "reference" in sides and not os.path.isfile(os.path.join(d["reference"], f"{steps[-1] // per_epoch}_net_G.pth")):
            flags = ["--config", f"{CONFIG}:{variant}", "--seed", str(seed), "--data", self.data, *self.override_flags(),
                     "--run-dir", d["reference"], "--init", d["init"], "--threads", str(self.args.torch_threads)]
            flags += ["--vgg-weights", self.vgg_weights] if variant == "vgg" else []
            procs.append(self.reference_tool("train", *flags, log=d["reference"] + ".log",
                                             wait=not self.args.side_by_side))
        failed = [p for p in procs if p.wait()]
        if failed:
            raise SystemExit(f"{len(failed)} training run(s) of {run_name(variant, seed)} failed; see "
                             f"{d['ours']}.log and {d['reference']}.log")

    def saved(self, side, variant, seed, step):
        """Whether G of `side` at `step` is saved completely (Orbax renames a finished step's
        folder; the reference writes iter.txt after an epoch's save)."""
        d, config = self.dirs(variant, seed), self.config(variant, seed)
        if side == "ours":
            source, item = (d["ours_init"], "models") if step == 0 else (d["ours"], "state")
            return os.path.isdir(os.path.join(checkpoint.checkpoint_dir(source), str(step), item))
        if step == 0:
            return os.path.isfile(os.path.join(d["init"], "latest_net_G.pth"))
        return reference_saved(d["reference"], step // self.steps(config)[0])

    def score(self, variant, seed):
        """The judge on G at every saved step, both sides (runs in this process)."""
        from pix2pixhd_jax.evaluation.evaluate import Evaluation, scalars
        from pix2pixhd_jax.inference.synthesis import Synthesizer

        d, config = self.dirs(variant, seed), self.config(variant, seed)
        per_epoch, steps = self.steps(config)
        todo = [(side, s) for side in SIDES for s in steps
                if not os.path.isfile(os.path.join(d[side], "scores", f"{s:05d}.json"))
                and self.saved(side, variant, seed, s)]
        if not todo:
            return
        nvidia_reference.use_reference(self.args.ref, self.args.stubs)
        evaluation = Evaluation(config, self.judge, "test", self.eval_data)
        synth = None
        for side, step in todo:
            samples = {0: os.path.join(d[side], "eval_samples_step0"),
                       steps[-1]: os.path.join(d[side], "eval_samples")}.get(step)
            if side == "ours":
                source, item = (d["ours_init"], "models") if step == 0 else (d["ours"], "state")
                saved = checkpoint.restore_to_host(source, step, item)
                variables = saved if step == 0 else checkpoint.network_variables(saved["g_params"], saved["g_stats"])
                if synth is None:
                    synth = Synthesizer(config, variables)
                else:
                    synth.set_variables(variables)
                result = {"workdir": source, "step": step, **evaluation.run(synth, "auto", 1, samples, False)}
            else:
                where = (d["init"], "latest") if step == 0 else (d["reference"], str(step // per_epoch))
                ref_synth = nvidia_reference.ReferenceSynthesizer(config, os.path.dirname(where[0]),
                                                                  os.path.basename(where[0]), where[1])
                result = {"workdir": where[0], "step": step, **evaluation.run(ref_synth, "auto", 1, samples, False),
                          "reference": {"generator": os.path.join(*where) + "_net_G.pth",
                                        "commit": nvidia_reference.checkout_commit(self.args.ref)}}
            result["config"] = checkpoint.config_dict(config)
            result["scalars"] = scalars(result)
            os.makedirs(os.path.join(d[side], "scores"), exist_ok=True)
            atomic.write_json(os.path.join(d[side], "scores", f"{step:05d}.json"), result)
            print(f"{run_name(variant, seed)} {side} step {step}: mean IoU {result['scalars']['eval/mean_iou']:.4f}",
                  flush=True)

    def judged_here(self, path):
        """Whether `path` is an `evaluate` JSON made with this judge (a final of another is redone)."""
        from pix2pixhd_jax.evaluation.segmenter import load_segmenter, params_digest

        if not os.path.isfile(path):
            return False
        if not hasattr(self, "_judge_digest"):
            self._judge_digest = params_digest(load_segmenter(self.judge)[2])
        return json.load(open(path)).get("segmenter_digest") == self._judge_digest

    def finals(self, variant, seed):
        """<out>/{ours,reference}[_vgg]_seed<K>.json for the final step."""
        d, config = self.dirs(variant, seed), self.config(variant, seed)
        _, steps = self.steps(config)
        os.makedirs(self.out, exist_ok=True)
        ours = os.path.join(self.out, out_name("ours", variant, seed))
        if checkpoint.latest_step(d["ours"], "state") == steps[-1] and not self.judged_here(ours):
            self.cli("evaluate", "--workdir", d["ours"], "--segmenter", self.judge, "--dataroot", self.eval_data,
                     "--out", ours, "--quiet")
        ref = os.path.join(d["reference"], "scores", f"{steps[-1]:05d}.json")
        if os.path.isfile(ref):
            result = json.load(open(ref))
            result["reference"].update(cpu_changes=list(nvidia_reference.CPU_CHANGES),
                                       options=nvidia_reference.training_options(
                                           config, nvidia_reference.count_examples(self.data) // config.train.batch_size))
            with open(os.path.join(self.out, out_name("reference", variant, seed)), "w") as f:
                json.dump(result, f, indent=2)


# ----- the report --------------------------------------------------------------------------------


def stats(values):
    v = np.asarray(values, np.float64)
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


def loss_log(side_dir, side, examples, batch):
    """{step: {loss name: value}} from ours' metrics.jsonl or the reference's loss_log.txt."""
    points = {}
    if side == "ours":
        path = os.path.join(side_dir, "tensorboard", "metrics.jsonl")
        for line in open(path) if os.path.isfile(path) else ():
            rec = json.loads(line)
            if "loss_G_GAN" in rec:
                points[int(rec["step"])] = {k: rec[f"loss_{k}"] for k in LOSSES if f"loss_{k}" in rec}
        return points
    path = os.path.join(side_dir, "loss_log.txt")
    for line in open(path) if os.path.isfile(path) else ():
        if not line.startswith("(epoch"):
            continue
        head, _, tail = line.partition(")")
        fields = dict(p.split(": ") for p in head[1:].split(", "))
        step = ((int(fields["epoch"]) - 1) * examples + int(fields["iters"])) // batch
        words = tail.split()
        points[step] = {words[i][:-1]: float(words[i + 1]) for i in range(0, len(words), 2)}
    return points


def window_means(points, every, total):
    out = {}
    for end in range(every, total + 1, every):
        rows = [v for s, v in points.items() if end - every < s <= end]
        if rows:
            out[end] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in LOSSES if any(k in r for r in rows)}
    return out


# Paths differ from machine to machine; every other setting of a kept record must be the run's.
MACHINE_KEYS = (("data", "dataroot"), ("loss", "vgg_weights"))


def record_settings(config):
    settings = checkpoint.config_dict(config)
    for group, key in MACHINE_KEYS:
        settings.get(group, {}).pop(key, None)
    return settings


def run_record(exp, side, variant, seed):
    """One run's scores per scored step and losses per window, kept in <out>/runs/<side>_<run>.json.

    A run's folder (checkpoints, samples, logs) stays on the machine that trained it; the record is
    what the project keeps. Where the folder is here it is read and the record refreshed (a step's
    score from the folder replaces the kept one); where it is not, the kept record stands in for it,
    so seeds trained on different machines or at different times report together. A record kept for
    other settings (a quick check with --override into the same --out) is refused, not merged."""
    path = os.path.join(exp.out, "runs", f"{side}_{run_name(variant, seed)}.json")
    kept = json.load(open(path)) if os.path.isfile(path) else {}
    config = exp.config(variant, seed)
    settings = record_settings(config)
    if kept.get("settings"):
        flat = [{f"{g}.{k}": v for g, group in d.items() for k, v in
                 (group.items() if isinstance(group, dict) else [("", group)])} for d in (kept["settings"], settings)]
        # Keys that only one side has are settings added to the project since: not a difference.
        differ = sorted(k.rstrip(".") for k in flat[0].keys() & flat[1].keys() if flat[0][k] != flat[1][k])
        if differ:
            raise SystemExit(f"{path}: kept for other settings than this run's ({', '.join(differ)} "
                             "differ); report runs of other settings into another --out.")
    record = {"settings": settings, "scores": {int(s): v for s, v in kept.get("scores", {}).items()},
              "losses": {int(e): v for e, v in kept.get("losses", {}).items()}}
    if side == "ours" and kept.get("step0_pixels"):
        record["step0_pixels"] = kept["step0_pixels"]
    d = exp.dirs(variant, seed)[side]
    if os.path.isdir(d):
        _, steps = exp.steps(config)
        for s in steps:
            score = os.path.join(d, "scores", f"{s:05d}.json")
            if os.path.isfile(score):
                result = json.load(open(score))
                record["scores"][s] = result["scalars"]
                if result.get("segmenter_digest"):
                    record["scores"][s]["judge"] = result["segmenter_digest"]
        examples = nvidia_reference.count_examples(exp.data)
        losses = window_means(loss_log(d, side, examples, config.train.batch_size),
                              config.train.save_latest_freq, steps[-1])
        record["losses"].update(losses)
        pixels = step0_pixels(exp, variant, seed) if side == "ours" else None
        if pixels:
            record["step0_pixels"] = pixels
    for key in ("scores", "losses"):
        record[key] = dict(sorted(record[key].items()))
    if record["scores"] or record["losses"]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic.write_json(path, {k: ({str(s): v for s, v in val.items()} if k in ("scores", "losses") else val)
                                 for k, val in record.items()})
    return record


def one_judge(runs, variant):
    """The runs of a variant pool only if one judge scored them all. A score names its judge by the
    digest of its parameters (`judge`: evaluate's segmenter_digest); one made without a digest by
    its oracle (the real photos' mean IoU, which only the same judge repeats on the same kind of
    machine), and it joins the digest whose scores show that oracle."""
    scores = [(f"{side} seed {seed}", score) for side, seeds in runs.items() for seed, by_step in seeds.items()
              for score in by_step.values()]
    oracle = lambda score: round(score["eval/oracle_mean_iou"], 9)  # noqa: E731
    digest_of = {oracle(s): s["judge"] for _, s in scores if s.get("judge")}
    judges = {}
    for run, score in scores:
        digest = score.get("judge") or digest_of.get(oracle(score))
        key = f"judge {digest[:16]}" if digest else f"oracle mean IoU {oracle(score)}"
        judges.setdefault(key, set()).add(run)
    if len(judges) > 1:
        found = "; ".join(f"{j}: {', '.join(sorted(r))}" for j, r in sorted(judges.items()))
        raise SystemExit(f"{variant}: the runs were scored by different judges ({found}); score every run "
                         "with one judge (score again the runs whose folders are here, train again the others, "
                         "or move their records away).")


def known_seeds(exp, variant, side):
    """Seeds with a run folder here or a kept record."""
    seeds = set()
    base = os.path.join(exp.root, side)
    for n in os.listdir(base) if os.path.isdir(base) else []:
        if n.startswith(f"{variant}_seed") and os.path.isdir(os.path.join(base, n)):
            seeds.add(int(n.split("_seed")[1]))
    kept = os.path.join(exp.out, "runs")
    for n in os.listdir(kept) if os.path.isdir(kept) else []:
        if n.startswith(f"{side}_{variant}_seed") and n.endswith(".json"):
            seeds.add(int(n[:-len(".json")].split("_seed")[1]))
    return sorted(seeds)


def collect(exp, variants):
    runs, summary, losses, pixels = {}, {}, {}, {}
    for variant in variants:
        _, steps = exp.steps(exp.config(variant, 0))
        runs[variant] = {side: {} for side in SIDES}
        losses[variant] = {side: {} for side in SIDES}
        for side in SIDES:
            for seed in known_seeds(exp, variant, side):
                record = run_record(exp, side, variant, seed)
                runs[variant][side][seed] = record["scores"]
                losses[variant][side][seed] = record["losses"]
                if side == "ours":
                    pixels[run_name(variant, seed)] = record.get("step0_pixels")
        one_judge(runs[variant], variant)
        summary[variant] = {}
        for s in steps:
            row = {}
            for side in SIDES:
                done = [r[s] for r in runs[variant][side].values() if s in r]
                if done:
                    row[side] = {key: stats([r[key] for r in done]) for key, _ in KEYS}
            if row:
                summary[variant][s] = row
    return runs, summary, losses, pixels


def plot_curves(summary, runs, path):
    import matplotlib  # the experiments extra: pip install -e .[experiments]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = {"ours": "tab:blue", "reference": "tab:orange"}
    names = {"ours": "this project", "reference": "NVIDIA's pix2pixHD"}
    for variant, style in (("gan_fm", "-"), ("vgg", "--")):
        rows = summary.get(variant, {})
        for side in SIDES:
            steps = [s for s in rows if side in rows[s]]
            if not steps:
                continue
            n = max(rows[s][side]["eval/mean_iou"]["n"] for s in steps)
            for ax, key in zip(axes, ("eval/mean_iou", "eval/pixel_accuracy")):
                mean = [rows[s][side][key]["mean"] for s in steps]
                label = f"{names[side]}, {'GAN + FM' if variant == 'gan_fm' else 'GAN + FM + VGG'} ({n} seed{'s' * (n > 1)})"
                ax.plot(steps, mean, style, marker="o", color=colours[side], label=label)
                if n > 1:
                    ax.fill_between(steps, [rows[s][side][key]["min"] for s in steps],
                                    [rows[s][side][key]["max"] for s in steps], color=colours[side], alpha=0.15)
    for ax, title in zip(axes, ("mean IoU", "pixel accuracy")):
        ax.set_xlabel("training step")
        ax.set_title(f"judge's {title}, 100 held-out scenes (mean; band: min-max over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_grid(exp, variant, seed, path, rows=4):
    d = exp.dirs(variant, seed)
    samples = [os.path.join(d[side], "eval_samples") for side in SIDES]
    if not all(os.path.isdir(s) for s in samples):
        return False
    names = sorted(os.listdir(os.path.join(exp.eval_data, "test_label")))[:rows]
    grid = []
    for name in names:
        stem = os.path.splitext(name)[0]
        row = [visualize.colorize_labels(np.asarray(Image.open(os.path.join(exp.eval_data, "test_label", name)))),
               np.asarray(Image.open(os.path.join(exp.eval_data, "test_img", name)).convert("RGB"))]
        row += [np.asarray(Image.open(os.path.join(s, f"{stem}.png")).convert("RGB")) for s in samples]
        grid.append(row)
    Image.fromarray(visualize.grid(grid)).save(path, quality=90)
    return True


def fmt(st, digits=4):
    return f"{st['mean']:.{digits}f} ± {st['std']:.{digits}f} [{st['min']:.{digits}f}, {st['max']:.{digits}f}]"


def second_half(steps):
    """The scored steps the late average takes: those from half the last one on."""
    return [s for s in steps if s >= max(steps) // 2]


def late_averages(runs, steps):
    """{side: {seed: {key: mean over `steps`}}} for mean IoU and pixel accuracy, of the runs
    (one variant's {side: {seed: {step: scores}}}) scored at every one of `steps`."""
    return {side: {seed: {k: float(np.mean([scores[s][k] for s in steps])) for k, _ in KEYS[:2]}
                   for seed, scores in seeds.items() if all(s in scores for s in steps)}
            for side, seeds in runs.items()}


def tables(summary, runs, losses, every):
    lines = []
    for variant, rows in summary.items():
        lines += [f"### {variant}", "",
                  "| step | ours mean IoU: mean ± std [min, max] | reference mean IoU | difference of means | "
                  "ours pixel acc. | reference pixel acc. | seeds (ours / reference) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for s, row in rows.items():
            o, r = row.get("ours"), row.get("reference")
            diff = f"{o['eval/mean_iou']['mean'] - r['eval/mean_iou']['mean']:+.4f}" if o and r else ""
            cells = [fmt(x["eval/mean_iou"]) if x else "" for x in (o, r)]
            cells += [diff] + [fmt(x["eval/pixel_accuracy"]) if x else "" for x in (o, r)]
            cells.append(f"{o['eval/mean_iou']['n'] if o else 0} / {r['eval/mean_iou']['n'] if r else 0}")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        last = max(rows)
        lines += ["", f"At step {last}, every score (mean ± std [min, max] over seeds):", "",
                  "| side | seeds | " + " | ".join(name for _, name in KEYS) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in KEYS) + " |"]
        for side in SIDES:
            if side in rows[last]:
                st = rows[last][side]
                lines.append(f"| {side} | {st['eval/mean_iou']['n']} | "
                             + " | ".join(fmt(st[k], 2 if k in ("eval/frechet_distance_segmenter", "eval/psnr") else 4)
                                          for k, _ in KEYS) + " |")
        late = second_half(rows)
        averages = late_averages(runs[variant], late)
        lines += ["", f"Averaged over the scored steps {late[0]}-{late[-1]} of each run (the scores swing from one "
                  "saved G to the next; a run's average over the second half says where it trains to), then "
                  "over seeds:", "",
                  "| side | seeds | " + " | ".join(name for _, name in KEYS[:2]) + " | per seed (mean IoU) |",
                  "| --- | --- | --- | --- | --- |"]
        for side in SIDES:
            if averages[side]:
                per_seed = ", ".join(f"{seed}: {v['eval/mean_iou']:.4f}" for seed, v in sorted(averages[side].items()))
                lines.append(f"| {side} | {len(averages[side])} | " + " | ".join(
                    fmt(stats([v[k] for v in averages[side].values()])) for k, _ in KEYS[:2]) + f" | {per_seed} |")
        lines += ["", "Per seed, mean IoU at each scored step:", "",
                  "| side, seed | " + " | ".join(str(s) for s in rows) + " |",
                  "| --- | " + " | ".join("---" for _ in rows) + " |"]
        for side in SIDES:
            for seed, scores in sorted(runs[variant][side].items()):
                lines.append(f"| {side} {seed} | " + " | ".join(
                    f"{scores[s]['eval/mean_iou']:.4f}" if s in scores else "" for s in rows) + " |")
        names = [k for k in LOSSES if any(k in w for side in SIDES for r in losses[variant][side].values()
                                          for w in r.values())]
        lines += ["", f"Losses, mean over each {every} steps and over seeds (ours / reference):", "",
                  "| steps | " + " | ".join(names) + " |", "| --- | " + " | ".join("---" for _ in names) + " |"]
        ends = sorted({e for side in SIDES for r in losses[variant][side].values() for e in r})
        for e in ends:
            cells = []
            for k in names:
                pair = []
                for side in SIDES:
                    vals = [r[e][k] for r in losses[variant][side].values() if e in r and k in r[e]]
                    pair.append(f"{np.mean(vals):.3f}" if vals else "-")
                cells.append(" / ".join(pair))
            lines.append(f"| {e - every + 1}-{e} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def spectrum_table(exp, runs):
    """The final pictures' power spectrum against the photos' (evaluate's `spectrum`), per run
    (of collect's `runs`) whose final JSON has one: the band's power ratio (blur) and its peak
    (grid texture)."""
    lines = []
    for variant, sides in runs.items():
        rows = []
        for side in SIDES:
            for seed in sorted(sides[side]):
                path = os.path.join(exp.out, out_name(side, variant, seed))
                result = json.load(open(path)) if os.path.isfile(path) else {}
                if result.get("spectrum"):
                    rows.append((side, seed, result["spectrum"]))
        if not rows:
            continue
        bands = list(rows[0][2])
        lines += [f"Final pictures of {variant}, power spectrum against the photos' (log10 of generated / real: "
                  "the band's power; its peak, at the period in px):", "",
                  "| side, seed | " + " | ".join(bands) + " |", "| --- | " + " | ".join("---" for _ in bands) + " |"]
        for side, seed, sp in rows:
            cells = [f"{sp[b]['log10_ratio']:+.2f}; peak {sp[b]['peak_log10_ratio']:+.2f} at {sp[b]['peak_period']:.1f}"
                     if sp.get(b) else "" for b in bands]
            lines.append(f"| {side} {seed} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def report(exp, variants):
    runs, summary, losses, pixels = collect(exp, variants)
    os.makedirs(exp.out, exist_ok=True)
    settings = {"variants": {v: checkpoint.config_dict(exp.config(v, 0)) for v in variants},
                "reference_commit": nvidia_reference.checkout_commit(exp.args.ref),
                "cpu_changes": list(nvidia_reference.CPU_CHANGES), "differences": list(DIFFERENCES),
                "judge": exp.judge, "eval_data": exp.eval_data, "data": exp.data}
    with open(os.path.join(exp.out, "results.json"), "w") as f:
        late = {v: late_averages(runs[v], second_half(rows)) for v, rows in summary.items() if rows}
        json.dump({"settings": settings, "runs": runs, "summary": summary, "late_average": late, "losses": losses,
                   "step0_pixels": pixels}, f, indent=1)
    if any(summary.values()):
        plot_curves(summary, runs, os.path.join(exp.out, "curves.png"))
    write_grid(exp, "gan_fm", 0, os.path.join(exp.out, "grid.jpg"))
    write_grid(exp, "vgg", 0, os.path.join(exp.out, "grid_vgg.jpg"))
    text = tables(summary, runs, losses, exp.config("gan_fm", 0).train.save_latest_freq)
    text += "\nStep 0, the two sides' pictures of the held-out scenes (uint8 values):\n\n" + "\n".join(
        f"- {name}: {p['equal']:.4%} of {p['values']} values equal, the others differ by at most {p['max_difference']}"
        for name, p in pixels.items() if p) + "\n"
    spectra = spectrum_table(exp, runs)
    text += "\n" + spectra if spectra else ""
    with open(os.path.join(exp.out, "tables.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="a checkout of NVIDIA/pix2pixHD")
    parser.add_argument("--stubs", default=nvidia_reference.DEFAULT_STUBS)
    parser.add_argument("--data", default="demo/synthetic")
    parser.add_argument("--root", default="runs/reference_training")
    parser.add_argument("--judge", default=os.path.join(ROOT, "experiments", "reference_training", "judge"),
                        help="the judge: a train-segmenter workdir or its export-segmenter folder (trained by "
                             "`prepare` where it has none)")
    parser.add_argument("--eval-data", default="runs/judge/eval_scenes")
    parser.add_argument("--out", default="experiments/reference_training")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the gan_fm variant")
    parser.add_argument("--vgg-seeds", default="0", help="seeds of the vgg variant ('' for none)")
    parser.add_argument("--stages", default="prepare,init,train,score,final,report")
    parser.add_argument("--one-at-a-time", dest="side_by_side", action="store_false",
                        help="train ours, then the reference (default: both at once)")
    parser.add_argument("--sides", default="ours,reference",
                        help="the sides to train (one lane per side: --sides reference in a second process "
                             "runs ahead of --sides ours; a run folder is trained by one process at a time)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--override", action="append", default=[],
                        help="key=value for the config of both sides (quick checks: train.niter=1 ...)")
    parser.add_argument("--pids", default=None, help="append the PID of every process started to this file")
    args = parser.parse_args()
    exp = Experiment(args)
    stages = set(args.stages.split(","))
    runs = [("gan_fm", int(s)) for s in args.seeds.split(",") if s] + \
           [("vgg", int(s)) for s in args.vgg_seeds.split(",") if s]
    variants = sorted({v for v, _ in runs} | {"gan_fm"})
    if "prepare" in stages:
        exp.prepare(variants)
    for variant, seed in runs:
        if "init" in stages:
            exp.initial_weights(variant, seed)
        if "train" in stages:
            exp.train(variant, seed)
        if "score" in stages:
            exp.score(variant, seed)
        if "final" in stages:
            exp.finals(variant, seed)
    if "report" in stages:
        report(exp, variants)


if __name__ == "__main__":
    main()
