"""Where the train step's time goes: XLA's ops ranked by time in one profiled step.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true python experiments/profile_step.py \
        --config configs/default.py --height 128 --width 256 --batch 1 --config.loss.no_vgg_loss=true

Compiles the real train step (benchmark.filled_state, random batch), runs it twice, profiles
the third run with jax.profiler (a Perfetto trace under --trace-dir) and prints the total time
per op kind and the --top slowest ops with their shapes and the model path XLA kept in the op's
metadata. On CPU the per-op events need the XLA flag above; the profiler's own overhead makes
the profiled step slower than an unprofiled one, so read the ranking, not the sum.
"""

import collections
import glob
import gzip
import json
import os
import re
import sys

import jax
from step_setup import parse, step_inputs

from pix2pixhd_jax.runtime import host_memory
from pix2pixhd_jax.training.step import make_train_step

_RUNTIME_EVENTS = ("Thunk", "$", "Slinky", "Pjrt", "PjRt", "TfrtCpu")


def op_shapes_and_paths(hlo_text):
    """{op name: (result shape, op_name metadata)} from the compiled module's text."""
    out = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ", line)
        if m:
            path = re.search(r'op_name="([^"]+)"', line)
            out[m.group(1)] = (m.group(2), path.group(1) if path else "")
    return out


def main(argv=None):
    def add_arguments(parser):
        parser.add_argument("--top", type=int, default=30)
        parser.add_argument("--trace-dir", default="/tmp/pix2pixhd_profile")

    args, _, config = parse(__doc__.splitlines()[0], argv, width=256, batch=1, add_arguments=add_arguments)
    host_memory.keep_freed_memory()
    _, state, data = step_inputs(config, args)
    state = jax.device_put(state)
    compiled = jax.jit(make_train_step(config, 1000)).lower(state, data, {}).compile()
    for _ in range(2):
        state, metrics, _ = compiled(state, data, {})
        jax.block_until_ready(metrics)
    with jax.profiler.trace(args.trace_dir, create_perfetto_trace=True):
        state, metrics, _ = compiled(state, data, {})
        jax.block_until_ready(metrics)
    trace = sorted(glob.glob(os.path.join(args.trace_dir, "**", "*.trace.json.gz"), recursive=True),
                   key=os.path.getmtime)[-1]
    events = [e for e in json.load(gzip.open(trace))["traceEvents"]
              if e.get("ph") == "X" and not e["name"].startswith(_RUNTIME_EVENTS)]
    if not events:
        sys.exit("no per-op events in the trace: on CPU set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true")
    ops = op_shapes_and_paths(compiled.as_text())
    kinds = collections.Counter()
    for e in events:
        kinds[re.sub(r"\.\d+$", "", e["name"])] += e["dur"]
    print(f"{sum(kinds.values()) / 1e3:.1f} ms of op time in the profiled step (trace: {trace})")
    for kind, us in kinds.most_common(12):
        print(f"{us / 1e3:9.1f} ms  {kind}")
    print()
    for e in sorted(events, key=lambda e: -e["dur"])[:args.top]:
        shape, path = ops.get(e["name"], ("?", ""))
        print(f"{e['dur'] / 1e3:8.1f} ms  {e['name']:28s} {shape[:30]:30s} {path.replace('jit(step_fn)/', '')[-80:]}")


if __name__ == "__main__":
    main()
