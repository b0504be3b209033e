"""Every GPU figure of experiments/benchmarks.md in one run, one JSON record per figure.

    bash experiments/gpu_suite.sh [--ref DIR] [--out experiments/gpu] [--budget-s 450]
    bash experiments/gpu_suite.sh --smoke --out /tmp/gpu_smoke      # the same path, tiny, on a CPU

Figures, in order (each in its own process, so each peak memory is its own):
  train_1024x512_f32        the 512p global generator's step with the VGG loss, batch 1, float32
  train_1024x512_bf16       the same in bfloat16
  train_2048x1024_bf16_remat  the local enhancer with num_D 3 and VGG, bfloat16, train.remat=blocks, batch 1;
                            with it synthesis_2048x1024_bf16 (G alone, one map)
  train_1024x512_bf16_largest_batch  the largest batch that runs (doubling from 2, bounded)
  artifact_2048x1024_{f32,bf16}  the exported StableHLO generator (random weights) called on one map
  train_oasis_512x256_bf16  OASIS's step (configs/oasis_cityscapes.py: SPADE G with 3D noise, the U-Net
                            D with LabelMix, no VGG) at its Cityscapes size, batch 4, bfloat16
  reference_1024x512_{f32,amp}   the PyTorch reference's step (../shared/tools/ref_step.py, --ref)
Each record: what, device_kind, images_per_s, median_step_s, peak_memory_bytes, dtype, height,
width, batch, commit, date, and the rest of what the measuring command printed. A figure that
cannot be measured (no --ref, out of time) gets a record with `skipped` and the reason. Later
figures are skipped once --budget-s seconds have passed.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from jax import export as jax_export

from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.inference import export
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.pix2pixhd import Networks
from pix2pixhd_jax.weights.filled import random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
# --smoke: the same commands on small networks and sizes (a CPU runs them in seconds).
SMOKE_MODEL = ["--config.model.ngf=4", "--config.model.ndf=4", "--config.model.n_downsample_global=2",
               "--config.model.n_blocks_global=1", "--config.model.n_layers_D=1", "--config.model.n_blocks_local=1",
               "--config.model.num_res_blocks=3", "--config.model.z_dim=4", "--config.model.spade_hidden=8"]


class Suite:
    def __init__(self, args):
        self.args = args
        self.start = time.time()
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.common = {"device_kind": str(jax.devices()[0].device_kind), "commit": args.commit or commit(),
                       "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
                       "smoke": bool(args.smoke), "jax": jax.__version__}

    def size(self, height, width):
        return (32, 64) if self.args.smoke else (height, width)

    def over_budget(self):
        return time.time() - self.start > self.args.budget_s

    def record(self, what, fields):
        fields = dict(fields)
        if "what" in fields:  # the measuring command's own name for it
            fields["measured"] = fields.pop("what")
        rec = {"what": what, **fields, **self.common}
        path = os.path.join(self.out, f"{what}.json")
        with open(path, "w") as f:
            json.dump(rec, f, indent=1)
        print(f"{what}: " + (f"skipped ({rec['skipped']})" if "skipped" in rec else
                             f"{rec.get('images_per_s')} images/s, {rec.get('median_step_s')} s, peak "
                             f"{rec.get('peak_memory_bytes')} B") + f" -> {path}", flush=True)
        return rec

    def skip(self, what, reason, **fields):
        return self.record(what, {"skipped": reason, **fields})

    def run_json(self, cmd, timeout):
        """The last JSON line of a command, or (None, why it failed)."""
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout} s"
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"exit {proc.returncode}: {' | '.join(tail)[-600:]}"
        return json.loads(lines[-1]), None

    def benchmark(self, what, config, height, width, batch, dtype, extra=(), synthesis=False, steps=None):
        if self.over_budget():
            return self.skip(what, f"over the {self.args.budget_s} s budget", dtype=dtype, batch=batch)
        height, width = self.size(height, width)
        steps = 1 if self.args.smoke else (steps or 10)
        cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", "benchmark", "--config", os.path.join(CONFIGS, config),
               "--height", str(height), "--width", str(width), "--batch", str(batch), "--dtype", dtype,
               "--steps", str(steps), "--warmup", "0" if self.args.smoke else "2",
               "--config.loss.no_vgg_loss=false", *extra, *(SMOKE_MODEL if self.args.smoke else [])]
        if not synthesis:
            cmd.append("--no-synthesis")
        result, error = self.run_json(cmd, timeout=self.args.item_timeout_s)
        if result is None:
            return self.skip(what, error, dtype=dtype, height=height, width=width, batch=batch)
        rec = self.record(what, result | {"command": " ".join(cmd[2:])})
        if synthesis and "synthesis_median_s" in result:
            self.record(what.replace("train", "synthesis").replace("_remat", ""), {
                "dtype": dtype, "height": height, "width": width, "batch": 1,
                "median_step_s": result["synthesis_median_s"], "images_per_s": round(1 / result["synthesis_median_s"], 3),
                "peak_memory_bytes": result["peak_memory_bytes"], "command": " ".join(cmd[2:])})
        return rec

    def largest_batch(self):
        what = "train_1024x512_bf16_largest_batch"
        best, batch = None, 2
        trials = 1 if self.args.smoke else 5
        for _ in range(trials):
            if self.over_budget():
                break
            rec = self.benchmark(f"{what}_try_b{batch}", "cityscapes_1024x512.py", 512, 1024, batch, "bfloat16",
                                 steps=3)
            if "skipped" in rec:
                break
            best, batch = rec, batch * 2
        if best is None:
            return self.skip(what, "no batch of 2 or more ran", dtype="bfloat16")
        fields = {k: v for k, v in best.items() if k not in self.common and k != "what"}
        return self.record(what, fields | {"search": f"doubling from 2, at most {trials} tries; the next size failed "
                                                     "or was not tried"})

    def artifacts(self):
        for dtype, tag in (("float32", "f32"), ("bfloat16", "bf16")):
            what = f"artifact_2048x1024_{tag}"
            if self.over_budget():
                self.skip(what, f"over the {self.args.budget_s} s budget", dtype=dtype)
                continue
            height, width = self.size(1024, 2048)
            cmd = [sys.executable, os.path.join(ROOT, "experiments", "gpu_suite.py"), "--artifact-latency",
                   "--height", str(height), "--width", str(width), "--dtype", dtype] + \
                (["--smoke"] if self.args.smoke else [])
            result, error = self.run_json(cmd, timeout=self.args.item_timeout_s)
            if result is None:
                self.skip(what, error, dtype=dtype)
            else:
                self.record(what, result)

    def reference(self):
        tool = os.path.join(os.path.dirname(ROOT), "shared", "tools", "ref_step.py")
        tool = self.args.ref_step or tool
        for amp, tag in ((False, "f32"), (True, "amp")):
            what = f"reference_1024x512_{tag}"
            if not self.args.ref:
                self.skip(what, "no --ref DIR (a fetched NVIDIA/pix2pixHD) given")
                continue
            if not os.path.isfile(tool):
                self.skip(what, f"{tool} not found (--ref-step FILE)")
                continue
            if self.over_budget():
                self.skip(what, f"over the {self.args.budget_s} s budget")
                continue
            height, width = self.size(512, 1024)
            device = "cpu" if self.args.smoke else "cuda"
            cmd = [sys.executable, tool, "--ref", self.args.ref, "--height", str(height), "--width", str(width),
                   "--device", device, "--vgg", "--steps", "2" if self.args.smoke else "10"]
            if self.args.smoke:
                cmd += ["--ngf", "4", "--ndf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1"]
            if amp and not self.args.smoke:
                cmd.append("--amp")
            result, error = self.run_json(cmd, timeout=self.args.item_timeout_s)
            if result is None:
                self.skip(what, error)
                continue
            sec, peak_gib = result.get("sec_per_step"), result.get("peak_mem_gib")
            self.record(what, result | {"median_step_s": sec, "images_per_s": round(1 / sec, 3) if sec else None,
                                        "dtype": "amp-bf16" if amp else "float32", "height": height, "width": width,
                                        "batch": 1, "command": " ".join(cmd[1:]),
                                        "peak_memory_bytes": int(peak_gib * 2 ** 30) if peak_gib else None})


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def artifact_latency(args):
    """Export a random-weights generator (the 2048x1024 config's local enhancer; tiny with --smoke)
    for this machine's platform and time one map through the deserialized program."""
    overrides = SMOKE_MODEL if args.smoke else []
    config = load_config(os.path.join(CONFIGS, "cityscapes_2048x1024.py"), overrides)
    nets = Networks(config)
    synth = Synthesizer(config, random_variables(nets), dtype=args.dtype)
    platform = jax.default_backend()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "generator.jax")
        with open(path, "wb") as f:
            f.write(export.export_stablehlo(synth, args.height, args.width, [platform]).serialize())
        export_s = time.perf_counter() - start
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            program = jax_export.deserialize(f.read())
    inputs = export.example_inputs(synth, export.signature(synth, args.height, args.width), batch=1)
    inputs = [jax.device_put(v) for v in inputs.values()]
    start = time.perf_counter()
    jax.block_until_ready(program.call(*inputs))
    first = time.perf_counter() - start
    times = []
    for _ in range(3 if args.smoke else 10):
        start = time.perf_counter()
        jax.block_until_ready(program.call(*inputs))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    stats = jax.devices()[0].memory_stats() or {}
    print(json.dumps({"dtype": args.dtype, "height": args.height, "width": args.width, "batch": 1,
                      "median_step_s": round(median, 5), "images_per_s": round(1 / median, 3),
                      "first_call_s": round(first, 2), "export_s": round(export_s, 2), "artifact_bytes": size,
                      "peak_memory_bytes": stats.get("peak_bytes_in_use"), "platform": platform,
                      "checksum": int(np.asarray(program.call(*inputs)).sum())}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny networks and sizes: the same path on a CPU")
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "gpu"))
    parser.add_argument("--ref", default=None, help="a fetched NVIDIA/pix2pixHD (its models/networks.py is read)")
    parser.add_argument("--ref-step", default=None, help="ref_step.py (default ../shared/tools/ref_step.py)")
    parser.add_argument("--commit", default=None, help="the commit to write in the records (default: git's HEAD)")
    parser.add_argument("--budget-s", type=float, default=450.0)
    parser.add_argument("--item-timeout-s", type=float, default=300.0)
    parser.add_argument("--artifact-latency", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--height", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, default=2048, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.artifact_latency:
        return artifact_latency(args)
    suite = Suite(args)
    suite.benchmark("train_1024x512_f32", "cityscapes_1024x512.py", 512, 1024, 1, "float32")
    suite.benchmark("train_1024x512_bf16", "cityscapes_1024x512.py", 512, 1024, 1, "bfloat16")
    suite.benchmark("train_2048x1024_bf16_remat", "cityscapes_2048x1024.py", 1024, 2048, 1, "bfloat16",
                    extra=("--remat", "blocks"), synthesis=True)
    suite.largest_batch()
    suite.artifacts()
    suite.benchmark("train_oasis_512x256_bf16", "oasis_cityscapes.py", 256, 512, 4, "bfloat16",
                    extra=("--config.loss.no_vgg_loss=true",))
    suite.reference()
    print(f"records in {suite.out} ({time.time() - suite.start:.0f} s)")


if __name__ == "__main__":
    main()
