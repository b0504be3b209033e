"""The 512p train step's conv layers one at a time: forward + backward, lax vs the CPU path vs PyTorch.

    python experiments/conv_layers.py [--steps 5]

Each case is a layer of the reference's 512p generator or discriminator at 256x128, batch 1:
jax.grad of sum(y**2) w.r.t. input and kernel, jitted, median of --steps calls after two;
`lax` is XLA's own convolution and gradient (what accelerators run), `cpu path` is
models/conv.py's (conv2d / conv_transpose with cpu_path=True), `torch` is the same layer in
PyTorch when it is installed (2 threads, the reference's ops). Prints one JSON line per case.
"""

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax.models.conv import conv2d, conv_transpose
from pix2pixhd_jax.runtime import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, input H, W, cin, cout, kernel, stride, padding, transposed (padding 1, output_padding 1)
CASES = [
    ("G conv_in 7x7 (after reflection pad)", 134, 262, 36, 64, 7, 1, 0, False),
    ("G down_0 3x3 s2", 128, 256, 64, 128, 3, 2, 1, False),
    ("G down_3 3x3 s2", 16, 32, 512, 1024, 3, 2, 1, False),
    ("G residual 3x3 (after reflection pad)", 10, 18, 1024, 1024, 3, 1, 0, False),
    ("G up_0 transposed 3x3 s2", 8, 16, 1024, 512, 3, 2, 1, True),
    ("G up_3 transposed 3x3 s2", 64, 128, 128, 64, 3, 2, 1, True),
    ("G conv_out 7x7 (after reflection pad)", 134, 262, 64, 3, 7, 1, 0, False),
    ("D layer_0 4x4 s2", 128, 256, 39, 64, 4, 2, 2, False),
    ("D layer_3 4x4 s1", 17, 33, 256, 512, 4, 1, 2, False),
]


def timed(fn, *args, steps):
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_time(case, x, kernel, steps):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    _, _, _, cin, cout, k, s, p, transposed = case
    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2), requires_grad=True)
    layer = (torch.nn.ConvTranspose2d(cin, cout, k, s, 1, output_padding=1) if transposed
             else torch.nn.Conv2d(cin, cout, k, s, p))

    def step():
        y = layer(xt)
        (y * y).sum().backward()

    step(), step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    host_memory.keep_freed_memory()
    rng = np.random.default_rng(0)
    for case in CASES:
        name, h, w, cin, cout, k, s, p, transposed = case
        x = jnp.asarray(rng.standard_normal((1, h, w, cin), np.float32))
        shape = (k, k, cout, cin) if transposed else (k, k, cin, cout)
        kernel = jnp.asarray(rng.standard_normal(shape, np.float32) * 0.02)
        row = {"layer": name}
        for label, cpu_path in (("lax_s", False), ("cpu_path_s", True)):
            if transposed:
                def op(x, kernel, cpu_path=cpu_path):
                    return conv_transpose(x, kernel, s, 1, 1, cpu_path=cpu_path)
            else:
                def op(x, kernel, cpu_path=cpu_path):
                    return conv2d(x, kernel, (s, s), ((p, p), (p, p)), cpu_path=cpu_path)
            grad = jax.jit(jax.grad(lambda x, kernel, op=op: jnp.sum(op(x, kernel) ** 2), argnums=(0, 1)))
            row[label] = round(timed(grad, x, kernel, steps=args.steps), 4)
        torch_s = torch_time(case, x, kernel, args.steps)
        row["torch_s"] = None if torch_s is None else round(torch_s, 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
