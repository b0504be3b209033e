"""Latency of the interactive editor (`pix2pixhd-jax serve`) as the page sees it: HTTP round
trips of edits on a test scene, each an edit + synthesis + two PNGs in the JSON reply.

    pix2pixhd-jax make-synthetic --out /tmp/ed512 --num-train 1 --num-test 2 --size 512x256
    python experiments/editor_latency.py --workdir runs/features --dataroot /tmp/ed512 --repeats 7

The server runs in this process on a free loopback port. One JSON line per operation:
median and max client round trip over --repeats calls, and the server's own split
(edit + synthesis; with the PNGs). The first open (compile included) is reported apart.
"""

import argparse
import json
import platform
import statistics
import threading
import time
import urllib.request

import numpy as np
import jax

from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.serve import EditorService, list_test_scenes, make_server


def call(base, op, body):
    req = urllib.request.Request(f"{base}/api/{op}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as res:
        out = json.loads(res.read())
    return out, (time.perf_counter() - start) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--dataroot", default=None, help="the test split (default: the workdir config's)")
    ap.add_argument("--scene", type=int, default=0, help="index of the test scene")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    synth = Synthesizer.from_workdir(args.workdir)
    service = EditorService(synth, list_test_scenes(synth.config, args.dataroot))
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    common = {"device": str(jax.devices()[0]), "cpu": platform.processor() or platform.machine(),
              "model": f"{synth.config.name} ngf {synth.config.model.ngf}", "workdir": args.workdir}

    state, first = call(base, "open", {"index": args.scene})
    sid, w, h = state["session"], state["width"], state["height"]
    print(json.dumps(dict(common, op="open (first: compile included)", size=f"{w}x{h}", client_ms=round(first, 1),
                          server_ms=state["timing_ms"])))
    inst = np.asarray(service.sessions[sid].editor.scene.inst)
    ids, counts = np.unique(inst[inst >= 1000], return_counts=True)
    largest = int(ids[np.argmax(counts)]) if len(ids) else int(np.bincount(inst.reshape(-1)).argmax())
    ys, xs = np.nonzero(inst == largest)
    n_styles = call(base, "select", {"session": sid, "x": int(xs[0]), "y": int(ys[0])})[0]["selected"]["styles"]
    rng = np.random.default_rng(0)

    def paint(k):
        x, y = int(rng.integers(20, w - 60)), int(rng.integers(h // 2, h - 10))
        return call(base, "paint", {"session": sid, "class": [21, 7, 23][k % 3], "points": [[x, y], [x + 40, y]],
                                    "radius": 6})

    ops = {
        "paint (brush stroke)": paint,
        "style (largest object)": lambda k: call(base, "style", {"session": sid, "instance": largest,
                                                                 "style": k % max(n_styles, 1)}),
        "undo": lambda k: call(base, "undo", {"session": sid}),
        "fill": lambda k: call(base, "fill", {"session": sid, "class": [22, 8][k % 2], "x": 2, "y": h - 3}),
    }
    for name, fn in ops.items():
        if name.startswith("style") and not n_styles:
            continue
        client, server_split = [], []
        for k in range(args.repeats):
            out, ms = fn(k)
            client.append(ms)
            server_split.append(out["timing_ms"])
        print(json.dumps(dict(common, op=name, size=f"{w}x{h}", repeats=args.repeats,
                              client_ms_median=round(statistics.median(client), 1), client_ms_max=round(max(client), 1),
                              server_edit_and_synthesis_ms_median=round(statistics.median(
                                  s["edit_and_synthesis"] for s in server_split), 1),
                              server_total_ms_median=round(statistics.median(s["total"] for s in server_split), 1))))
    server.shutdown()


if __name__ == "__main__":
    main()
