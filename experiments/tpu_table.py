"""XLA:TPU's own figures for the Cityscapes recipes, compiled ahead of time on this machine
(experiments/benchmarks.md "TPU (compiled ahead of time)").

    python experiments/tpu_table.py [--out experiments/tpu/compiles.json] [--only v5e] [--what synthesis] [--batch 1]

Every entry is one `pix2pixhd-jax benchmark --topology` record (training/aot.py): the train step
`train` runs for a slice's chips, bf16, a per-chip batch: pix2pixHD's two Cityscapes recipes with
the VGG term on, OASIS's (configs/oasis_cityscapes.py) as it ships. For v5e:2x2 (the 16 GiB chip)
pix2pixHD's configs with the remat policies none, blocks, dots_saveable and full at batch 1; for every
topology (v5e:2x2, v4:2x2x1, v5p:2x2x1, v6e:2x2) the configs as shipped (their own train.remat)
at batch 1 and the largest batch per chip that XLA:TPU compiles within the chip's HBM, found by
compiling (a first guess from batch 1 on that chip and the bytes one more image costs, measured on
v5e from batches 1 and 2; then doubling until a batch does not fit, halving the gap while it is
wide and walking down from its top once it is narrow, until the boundary is seen); and synthesis at
2048x1024. Resumable: entries already in --out are not compiled again (each compile takes minutes
here; each entry records the commit it was compiled at). Several runs may share --out (say one per
config, --configs): each entry is merged into the file under a lock as it is compiled. Prints the
tables experiments/benchmarks.md shows; --report prints them from what is there, compiling nothing.
"""

import argparse
import contextlib
import fcntl
import functools
import json
import os
import re
import subprocess

from pix2pixhd_jax import atomic
from pix2pixhd_jax.config_loading import load_config
from pix2pixhd_jax.runtime import topology
from pix2pixhd_jax.training import aot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGG_ON = ("--config.loss.no_vgg_loss=false",)
# (config file, height, width, overrides): pix2pixHD's recipes with the paper's VGG term, OASIS's
# as it ships (it has no VGG term).
CONFIGS = {"global_1024x512": ("cityscapes_1024x512.py", 512, 1024, VGG_ON),
           "local_2048x1024": ("cityscapes_2048x1024.py", 1024, 2048, VGG_ON),
           "oasis_512x256": ("oasis_cityscapes.py", 256, 512, ())}
REMAT_CONFIGS = ("global_1024x512", "local_2048x1024")  # SPADE's G and OASIS's D have no remat policies
TOPOLOGIES = ("v5e:2x2", "v6e:2x2", "v5p:2x2x1", "v4:2x2x1")  # the order they are compiled in
POLICIES = ("none", "blocks", "dots_saveable", "layers", "full")
GIB = 2 ** 30
# A batch over the chip fails in seconds, one that fits takes minutes to compile: inside a gap this
# narrow the search tries its batches from the top down, so only the answer compiles in full.
NARROW_GAP = 4
COMMIT = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


class Table:
    def __init__(self, path):
        self.path = path
        self.entries = {}
        self._reload()

    def _reload(self):
        if os.path.isfile(self.path):
            self.entries.update(json.load(open(self.path)))

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get(self, topo, key, remat, batch, what="train_step", shard=None):
        config_file, height, width, shipped = CONFIGS[key]
        overrides = [*shipped, "--config.train.dtype=bfloat16"]
        if remat is not None:
            overrides.append(f"--config.train.remat={remat}")
        if shard is not None:
            overrides.append(f"--config.train.shard_params={str(shard).lower()}")
        config = load_config(os.path.join(ROOT, "configs", config_file), overrides)
        name = (f"{topo}/{key}/{what}/{config.train.remat}/{'sharded' if config.train.shard_params else 'replicated'}"
                f"/b{batch}")
        self._reload()
        if name not in self.entries:
            print("compiling", name, flush=True)
            rec = {**aot.compile_for_topology(config, topo, height, width, batch, what), "commit": COMMIT}
            with self._locked():
                self._reload()
                self.entries[name] = rec
                atomic.write_json(self.path, self.entries)
            print(name, rec.get("per_chip_gib"), "GiB" if rec["compiles"] else rec.get("error", "")[:200],
                  rec["compile_s"], "s", flush=True)
        return self.entries[name]

    def per_image_bytes(self, key):
        """What one more image per chip costs, from v5e's batches 1 and 2 (the per-chip program is
        the same on every chip but for tiling and code: a first guess that compiling then checks)."""
        one, two = self.get("v5e:2x2", key, None, 1), self.get("v5e:2x2", key, None, 2)
        if two["compiles"]:
            return two["per_chip_bytes"] - one["per_chip_bytes"]
        return one["per_chip_bytes"] - one["argument_bytes"]

    def largest_batch(self, topo, key):
        """The largest per-chip batch XLA:TPU compiles for the shipped config within a chip's HBM:
        from a first guess, doubling until a batch does not fit, then halving the gap, and in a
        narrow gap walking down from its top (XLA:TPU recomputes more as a chip fills, so an extra
        image costs less near the top than at 2)."""
        one = self.get(topo, key, None, 1)
        if not one["compiles"]:
            return 0
        hbm = topology.CHIPS[one["device_kind"]].hbm_bytes
        b = max(2, 1 + int((hbm - one["per_chip_bytes"]) // max(self.per_image_bytes(key), 1)))
        fits, over = 1, None
        while over is None or over - fits > 1:
            if fits_hbm(self.get(topo, key, None, b)):
                fits = b
            else:
                over = b
            fits, over = self.bounds(topo, key, fits, over)
            if over is None:
                b = fits * 2
            else:
                b = over - 1 if over - fits <= NARROW_GAP else (fits + over) // 2
        return fits

    def bounds(self, topo, key, fits, over):
        """The gap narrowed by the batches already compiled: the smallest known not to fit above
        `fits`, then the largest known to fit below that, so a resumed search compiles only
        inside the gap still open."""
        known = self.batches(topo, key)
        over = min((k for k, ok in known.items() if not ok and k > fits), default=over)
        fits = max((k for k, ok in known.items() if ok and fits <= k and (over is None or k < over)), default=fits)
        return fits, over

    def batches(self, topo, key):
        """{per-chip batch: whether it fits} of the shipped config's entries on `topo`."""
        return {b: fits_hbm(rec) for b, rec in shipped_batches(self.entries).get((topo, key), {}).items()}


def report(entries):
    """The tables benchmarks.md shows, from the entries compiled so far."""
    rows = {}
    for name, rec in entries.items():
        topo, key, what, remat, placement, batch = name.split("/")
        if what == "train_step":
            rows.setdefault((topo, key), []).append((remat, placement, int(batch[1:]), rec))
    print("| topology | config | remat | state | images per chip | per chip | arguments | temporaries | "
          "generated code | FLOPs per chip and step | roofline bound | roofline images/s per chip | commit |")
    print("| --- " * 13 + "|")
    for (topo, key), entries_ in sorted(rows.items(), key=lambda kv: (kv[0][0] != "v5e:2x2", kv[0])):
        for remat, placement, batch, rec in sorted(entries_, key=lambda e: (POLICIES.index(e[0])
                                                                           if e[0] in POLICIES else 9, e[1], e[2])):
            head = f"| {topo} | {key} | {remat} | {placement} | {batch} |"
            if not rec["compiles"]:
                print(f"{head} does not fit: {rec['error'][:160]} | | | | | | | {rec.get('commit', '')} |")
                continue
            rf = rec["roofline"]
            print(f"{head} {rec['per_chip_gib']:.2f} GiB | {rec['argument_bytes'] / GIB:.2f} GiB | "
                  f"{rec['temp_bytes'] / GIB:.2f} GiB | {rec['generated_code_bytes'] / GIB:.2f} GiB | "
                  f"{rec['flops_per_chip_step'] / 1e12:.2f} TFLOP | {rf['step_time_bound_s'] * 1e3:.0f} ms | "
                  f"{rf['images_per_s_per_chip_bound']:.2f} | {rec.get('commit', '')} |")


def report_synthesis(entries):
    """Synthesis (G's forward pass, one picture per chip) per topology."""
    rows = [(name.split("/")[0], name.split("/")[1], rec) for name, rec in sorted(entries.items())
            if name.split("/")[2] == "synthesis"]
    if not rows:
        return
    print("| topology | config | per chip | arguments | temporaries | FLOPs per picture | roofline bound | "
          "roofline pictures/s per chip | commit |")
    print("| --- " * 9 + "|")
    for topo, key, rec in rows:
        if not rec["compiles"]:
            print(f"| {topo} | {key} | does not fit: {rec['error'][:160]} | | | | | | {rec.get('commit', '')} |")
            continue
        rf = rec["roofline"]
        print(f"| {topo} | {key} | {rec['per_chip_gib']:.2f} GiB | {rec['argument_bytes'] / GIB:.2f} GiB | "
              f"{rec['temp_bytes'] / GIB:.2f} GiB | {rec['flops_per_chip_step'] / 1e12:.2f} TFLOP | "
              f"{rf['step_time_bound_s'] * 1e3:.1f} ms | {rf['images_per_s_per_chip_bound']:.1f} | "
              f"{rec.get('commit', '')} |")


@functools.lru_cache(maxsize=None)
def shipped_remat(key):
    config_file = CONFIGS[key][0]
    return load_config(os.path.join(ROOT, "configs", config_file)).train.remat


def shipped_batches(entries):
    """{(topology, config): {per-chip batch: record}} of the configs as shipped (their own remat,
    replicated state)."""
    found = {}
    for name, rec in entries.items():
        topo, key, what, remat, placement, batch = name.split("/")
        if what == "train_step" and placement == "replicated" and remat == shipped_remat(key):
            found.setdefault((topo, key), {})[int(batch[1:])] = rec
    return found


def largest_batches(entries):
    """{(topology, config): (the largest batch that compiled within HBM, its record, the smallest
    larger batch that did not fit and its record, or (None, None) where none was compiled)}."""
    out = {}
    for group, records in shipped_batches(entries).items():
        best = max((b for b, rec in records.items() if fits_hbm(rec)), default=0)
        over = min((b for b, rec in records.items() if not fits_hbm(rec) and b > best), default=None)
        out[group] = (best, records.get(best), over, records.get(over))
    return out


def fits_hbm(rec) -> bool:
    """Compiled, and XLA's memory analysis (arguments, outputs, temporaries and code, less what
    outputs alias) within the chip's HBM: XLA:TPU has compiled batches whose analysis sums to more
    than the chip holds (v5p), which are not counted as fitting."""
    return rec["compiles"] and rec.get("fits_hbm", True)


def why_not(rec) -> str:
    """Why a batch does not fit: XLA:TPU's out-of-memory error, or its analysis over the HBM."""
    if rec["compiles"]:
        return (f"XLA:TPU compiles it, but its memory analysis sums to {rec['per_chip_gib']:.2f} GiB per chip, "
                f"over the chip's {rec['chip_hbm_gib']:.0f}")
    return out_of_memory(rec["error"])


def out_of_memory(error: str) -> str:
    match = re.search(r"temporaries \(([\d.]+G)\) exceeds available HBM \(([\d.]+G)\)", error)
    return (f"{match.group(1)} of temporaries against {match.group(2)} of HBM" if match
            else error.split(": ", 1)[-1][:120])


def report_largest(entries):
    print("| topology | config | remat | largest batch per chip | per chip at it | roofline images/s per chip at it "
          "| the next batch |")
    print("| --- " * 7 + "|")
    for (topo, key), (best, at, over, failed) in sorted(largest_batches(entries).items(),
                                                        key=lambda kv: (TOPOLOGIES.index(kv[0][0]), kv[0][1])):
        bounded = over == best + 1
        if failed is None:
            nxt = "not compiled yet"
        else:
            gap = f"{best + 1}" if over == best + 2 else f"{best + 1}-{over - 1}"
            nxt = f"{'' if bounded else f'{gap} not compiled yet; {over} '}does not fit: {why_not(failed)}"
        cells = (f"{at['per_chip_gib']:.2f} GiB of {at['chip_hbm_gib']:.0f} | {at['roofline']['images_per_s_per_chip_bound']:.2f}"
                 if at else " | ")
        print(f"| {topo} | {key} | {shipped_remat(key)} | {best if bounded else f'{best} or more'} | {cells} | {nxt} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "tpu", "compiles.json"))
    parser.add_argument("--only", default=None, help="only topologies whose name starts so (e.g. v5e)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="which configs, comma-separated: "
                        + ", ".join(CONFIGS))
    parser.add_argument("--what", choices=("all", "train_step", "synthesis"), default="all",
                        help="which programs: the train step's entries, synthesis at 2048x1024, or both")
    parser.add_argument("--batch", type=int, default=None,
                        help="compile only this per-chip batch of the shipped configs (no largest-batch search, "
                             "no remat policies)")
    parser.add_argument("--report", action="store_true", help="print the tables of what --out holds; compile nothing")
    args = parser.parse_args()
    table = Table(args.out)
    if args.report:
        report(table.entries)
        print()
        report_largest(table.entries)
        print()
        return report_synthesis(table.entries)
    topologies = [t for t in TOPOLOGIES if not args.only or t.startswith(args.only)]
    keys = [k for k in args.configs.split(",") if k]
    unknown = sorted(set(keys) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs {','.join(unknown)}: no such config; choose from {', '.join(CONFIGS)}")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch {args.batch}: a per-chip batch is 1 or more")
    # Synthesis first: G's forward pass compiles in a fraction of a train step's time and memory.
    if "local_2048x1024" in keys and args.what in ("synthesis", "all"):
        for t in topologies:
            table.get(t, "local_2048x1024", None, 1, what="synthesis")
    if args.what in ("train_step", "all"):
        for t in topologies:
            for k in keys:
                if args.batch is None:
                    table.largest_batch(t, k)
                else:
                    table.get(t, k, None, args.batch)
        if "v5e:2x2" in topologies and args.batch is None:
            for key in (k for k in keys if k in REMAT_CONFIGS):
                for policy in POLICIES:
                    table.get("v5e:2x2", key, policy, 1)
    report(table.entries)
    print()
    report_largest(table.entries)
    print()
    report_synthesis(table.entries)


if __name__ == "__main__":
    main()
