"""The input pipeline beside the reference's, on the same machine in one run (experiments/benchmarks.md "Input").

    python experiments/input_table.py --ref /tmp/pix2pixHD --data ../shared/data/cityscapes_samples \
        --out experiments/input/table.json [--images 48] [--rounds 2]

For the Cityscapes configs' two stages (512p: 2048x1024 files scaled to 1024x512; 1024p: read as
they are) on an `aligned` folder (the six Cityscapes samples): the reference's input path (its
AlignedDataset through torch's DataLoader, ../shared/tools/ref_input.py) with 1 and 2 workers,
`pix2pixhd-jax benchmark --input` on the files with 1 and 2 workers, and on the same data prepared
once for the config (`prepare-data`, data.prepared_dir) with 1 and 2 workers. The runs alternate
(every setting once per round), so a busy moment of the machine spreads over all of them; the
table reports each setting's median over the rounds. Prints a markdown table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_INPUT = os.path.join(os.path.dirname(ROOT), "shared", "tools", "ref_input.py")
STAGES = {  # config, the reference's --resize-or-crop and --load-size
    "512p": ("cityscapes_1024x512.py", "scale_width", 1024),
    "1024p": ("cityscapes_2048x1024.py", "none", 2048),
}


def run_json(cmd):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def ours(config, data, workers, images, prepared=None):
    cmd = [sys.executable, "-m", "pix2pixhd_jax.cli", "benchmark", "--input", "--config",
           os.path.join(ROOT, "configs", config), "--workers", str(workers), "--images", str(images),
           "--config.data.dataset_format=aligned", f"--config.data.dataroot={data}"]
    if prepared:
        cmd.append(f"--config.data.prepared_dir={prepared}")
    return run_json(cmd)


def reference(ref, data, mode, load_size, workers, images):
    return run_json([sys.executable, REF_INPUT, "--ref", ref, "--dataroot", data, "--resize-or-crop", mode,
                     "--load-size", str(load_size), "--workers", str(workers), "--images", str(images)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="an extracted checkout of NVIDIA/pix2pixHD")
    parser.add_argument("--data", required=True, help="an aligned folder (train_label, train_inst, train_img)")
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "input", "table.json"))
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = {}
        for stage, (config, _, _) in STAGES.items():
            prepared[stage] = os.path.join(tmp, stage)
            subprocess.run([sys.executable, "-m", "pix2pixhd_jax.cli", "prepare-data", "--config",
                            os.path.join(ROOT, "configs", config), "--out", prepared[stage], "--split", "train",
                            "--quiet", "--config.data.dataset_format=aligned", f"--config.data.dataroot={data}"],
                           cwd=ROOT, check=True, capture_output=True)
        for _ in range(args.rounds):
            for stage, (config, mode, load_size) in STAGES.items():
                for workers in (1, 2):
                    settings = {
                        "reference": lambda: reference(args.ref, data, mode, load_size, workers, args.images),
                        "files": lambda: ours(config, data, workers, args.images),
                        "prepared": lambda: ours(config, data, workers, args.images, prepared[stage]),
                    }
                    for source, measure in settings.items():
                        record = measure()
                        runs.setdefault(f"{stage}/{source}/w{workers}", []).append(record)
                        print(stage, source, workers, record["images_per_s"], flush=True)
    table = {key: {"images_per_s": statistics.median(r["images_per_s"] for r in records),
                   "each": [r["images_per_s"] for r in records],
                   "bytes_per_example": records[0]["bytes_per_example"]} for key, records in runs.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"table": table, "runs": runs, "images": args.images, "rounds": args.rounds,
                   "cpu_count": os.cpu_count()}, f, indent=2)
    print("\n| stage | workers | reference (DataLoader) | this project, files | this project, prepared | "
          "bytes per example (reference / this project) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for stage in STAGES:
        for workers in (1, 2):
            get = lambda source: table[f"{stage}/{source}/w{workers}"]  # noqa: E731
            print(f"| {stage} | {workers} | {get('reference')['images_per_s']:.1f} | {get('files')['images_per_s']:.1f} | "
                  f"{get('prepared')['images_per_s']:.1f} | {get('reference')['bytes_per_example'] / 1e6:.1f} MB / "
                  f"{get('files')['bytes_per_example'] / 1e6:.1f} MB |")


if __name__ == "__main__":
    main()
