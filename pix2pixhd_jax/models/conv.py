"""The convolution ops under every layer, with a CPU path that avoids XLA:CPU's slow cases.

Accelerators run lax's convolutions and XLA's own gradients. Which form a program gets is
chosen where it is lowered, not where it is traced (`jax.lax.platform_dependent`): one traced
function lowers to lax's convolutions for cuda, rocm and tpu and to the CPU path for cpu, and
a program exported for several platforms carries both. On the CPU, profiling the
reference's 512p train step (experiments/benchmarks.md) found four cases where XLA:CPU
(JAX 0.10.2) is several times slower than PyTorch's oneDNN; each is rewritten as the same
sums in another order:

- kernel gradients, which XLA runs as a naive convolution for some shapes (the
  discriminator's 4x4 stride-1 layer, 256->512 channels at 17x33: 1.37 s forward and
  backward, PyTorch 0.06 s), are matmuls over patches: 0.07 s;
- the input gradient of a conv whose kernel outweighs its output (the 1024-channel
  residual convs at 16x8) is one matmul and a shifted sum, instead of XLA's transposed
  copy of the 38 MB kernel;
- an unpadded stride-1 conv (after a reflection pad) runs 4-20x slower in XLA:CPU's
  convolution library than the same conv with zero padding, so it is computed padded
  by one and cropped (the 7x7 conv on the label map: 0.30 s -> 0.06 s);
- the gradient of a transposed conv (lhs-dilated) is 10-15x slower than PyTorch's, so a
  stride-s transposed conv is computed as s*s ordinary convs, one per output phase.

PIX2PIXHD_CPU_CONV=0 in the environment makes the CPU run lax's ops too (to compare, or
where XLA:CPU's convolution library behaves differently); `lax_ops()` does the same for the
programs traced inside it (converters that read the traced program, such as ONNX export,
need one form without the platform switch).
"""

import contextlib
import contextvars
import functools
import os

import jax
import jax.numpy as jnp

NHWC = ("NHWC", "HWIO", "NHWC")
_PATCH_BYTES = 64 << 20


def _lax_conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC)


def _cpu_forward(x, kernel, strides, padding):
    if strides == (1, 1) and padding == ((0, 0), (0, 0)) and kernel.shape[:2] != (1, 1):
        y = _lax_conv(x, kernel, strides, ((1, 1), (1, 1)))
        return y[:, 1:-1, 1:-1]
    return _lax_conv(x, kernel, strides, padding)


def _zero_pad(x, lo_hi_interior):
    return jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *lo_hi_interior, (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _cpu_conv(x, kernel, strides, padding):
    return _cpu_forward(x, kernel, strides, padding)


def _cpu_conv_fwd(x, kernel, strides, padding):
    return _cpu_forward(x, kernel, strides, padding), (x, kernel)


def _cpu_conv_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    kh, kw, cin, cout = kernel.shape
    n, oh, ow, _ = g.shape
    (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    g2 = g.reshape(-1, cout)
    xp = _zero_pad(x, ((pt, pb, 0), (pl, pr, 0)))

    def shifted(i, j):  # the input pixels that tap (i, j) multiplies, one row per output pixel
        end = (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, cin)
        return jax.lax.slice(xp, (0, i, j, 0), end, (1, sh, sw, 1)).reshape(-1, cin)

    # Patches of whichever side has fewer channels: the input's shifted windows against g, or
    # g placed at each tap's offset against the input (a 7x7 conv to 3 channels: 20 MB of
    # shifted g instead of 411 MB of input patches). All taps in one matmul where the patches
    # are small, else one matmul per kernel row.
    span_h, span_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    shift_g = span_h * span_w * cout < oh * ow * cin
    patch_bytes = n * len(taps) * x.dtype.itemsize * (span_h * span_w * cout if shift_g else oh * ow * cin)
    rows = [taps] if patch_bytes <= _PATCH_BYTES else [taps[r * kw:(r + 1) * kw] for r in range(kh)]
    if shift_g:
        window = jax.lax.slice(xp, (0, 0, 0, 0), (n, span_h, span_w, cin)).reshape(-1, cin)

        def placed(i, j):  # g where tap (i, j) puts it on the input's grid
            return _zero_pad(g, ((i, kh - 1 - i, sh - 1), (j, kw - 1 - j, sw - 1))).reshape(-1, cout)

        parts = [jax.lax.dot_general(window, jnp.concatenate([placed(i, j) for i, j in row], axis=1),
                                     (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
                 .reshape(cin, len(row), cout).transpose(1, 0, 2) for row in rows]
    else:
        parts = [jax.lax.dot_general(jnp.concatenate([shifted(i, j) for i, j in row], axis=1), g2,
                                     (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
                 for row in rows]
    dkernel = jnp.concatenate([p.reshape(-1, cout) for p in parts]).reshape(kernel.shape).astype(kernel.dtype)

    if strides == (1, 1) and min(padding[0] + padding[1]) >= 0 and cout >= n * oh * ow:
        # Every tap's share of the input gradient in one matmul (no larger than the kernel here).
        hp, wp = xp.shape[1], xp.shape[2]
        cols = jax.lax.dot_general(g2, kernel.reshape(-1, cin, cout), (((1,), (2,)), ((), ())))
        cols = cols.reshape(n, oh, ow, len(taps), cin)
        dxp = None
        for t, (i, j) in enumerate(taps):
            part = _zero_pad(cols[:, :, :, t], ((i, hp - i - oh, 0), (j, wp - j - ow, 0)))
            dxp = part if dxp is None else dxp + part
        dx = dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2]]
    else:
        _, input_vjp = jax.vjp(lambda x: _cpu_forward(x, kernel, strides, padding), x)
        (dx,) = input_vjp(g)
    return dx, dkernel


_cpu_conv.defvjp(_cpu_conv_fwd, _cpu_conv_bwd)


_LAX_ONLY = contextvars.ContextVar("pix2pixhd_lax_only", default=False)


@contextlib.contextmanager
def lax_ops():
    """Trace with lax's convolutions for every platform (no platform switch in the program)."""
    token = _LAX_ONLY.set(True)
    try:
        yield
    finally:
        _LAX_ONLY.reset(token)


def cpu_path_enabled() -> bool:
    """Whether programs lowered for the CPU get the CPU path: yes, unless PIX2PIXHD_CPU_CONV=0
    or inside `lax_ops()`."""
    return os.environ.get("PIX2PIXHD_CPU_CONV", "1") != "0" and not _LAX_ONLY.get()


def _per_platform(cpu_form, lax_form, *args):
    """cpu_form where the program is lowered for the CPU (when enabled), lax_form elsewhere."""
    if not cpu_path_enabled():
        return lax_form(*args)
    return jax.lax.platform_dependent(*args, cpu=cpu_form, default=lax_form)


def conv2d(x, kernel, strides=(1, 1), padding=((0, 0), (0, 0)), cpu_path: bool | None = None):
    """An NHWC/HWIO convolution with explicit padding. cpu_path: True or False forces one form;
    None (the layers' default) lets the platform the program is lowered for choose."""
    strides = tuple(int(s) for s in strides)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if cpu_path is None:
        return _per_platform(lambda x, k: _cpu_conv(x, k, strides, padding),
                             lambda x, k: _lax_conv(x, k, strides, padding), x, kernel)
    return (_cpu_conv if cpu_path else _lax_conv)(x, kernel, strides, padding)


def _phase_taps(kernel: int, stride: int, padding: int, phase: int):
    """Kernel taps that reach output phase `phase` (o = stride*m + phase): their indices in
    order of increasing input offset, and the first offset (input index = m + offset)."""
    taps = [k for k in range(kernel) if (phase + padding - k) % stride == 0]
    taps.sort(key=lambda k: (phase + padding - k) // stride)
    return taps, ((phase + padding - taps[0]) // stride if taps else 0)


def conv_transpose(x, kernel, stride: int, padding: int, output_padding: int = 0, cpu_path: bool | None = None):
    """PyTorch's conv_transpose2d on NHWC with a (kh, kw, out, in) kernel, no bias.

    Accelerators: one conv over the stride-dilated input with the flipped kernel (what
    cuDNN and TPUs are built for). CPU: each of the stride**2 output phases is an ordinary
    conv of the undilated input with the taps that reach it, the phases interleaved.
    cpu_path as for conv2d.
    """
    forms = (functools.partial(_phase_conv_transpose, stride=stride, padding=padding, output_padding=output_padding),
             functools.partial(_dilated_conv_transpose, stride=stride, padding=padding,
                               output_padding=output_padding))
    if cpu_path is None:
        return _per_platform(*forms, x, kernel)
    return forms[0 if cpu_path else 1](x, kernel)


def _dilated_conv_transpose(x, kernel, stride, padding, output_padding):
    k = kernel.shape[0]
    hwio = jnp.transpose(kernel, (0, 1, 3, 2))
    lo = k - 1 - padding
    return jax.lax.conv_general_dilated(
        x, jnp.flip(hwio, (0, 1)), (1, 1), [(lo, lo + output_padding)] * 2,
        lhs_dilation=(stride, stride), dimension_numbers=NHWC)


def _phase_conv_transpose(x, kernel, stride, padding, output_padding):
    k = kernel.shape[0]
    n, h, w, cin = x.shape
    hwio = jnp.transpose(kernel, (0, 1, 3, 2))
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    # Every phase is computed ceil(out / stride) long, the interleaved result cropped.
    len_h, len_w = -(-out_h // stride), -(-out_w // stride)
    taps = [_phase_taps(k, stride, padding, r) for r in range(stride)]
    used = [(t, d) for t, d in taps if t]
    lo = max([0] + [-d for _, d in used])
    hi_h = max([0] + [len_h + d + len(t) - 1 - h for t, d in used])
    hi_w = max([0] + [len_w + d + len(t) - 1 - w for t, d in used])
    xp = jnp.pad(x, ((0, 0), (lo, hi_h), (lo, hi_w), (0, 0)))
    rows = []
    for taps_h, off_h in taps:
        cols = []
        for taps_w, off_w in taps:
            if not taps_h or not taps_w:
                cols.append(jnp.zeros((n, len_h, len_w, hwio.shape[-1]), x.dtype))
                continue
            window = jax.lax.slice(
                xp, (0, lo + off_h, lo + off_w, 0),
                (n, lo + off_h + len_h + len(taps_h) - 1, lo + off_w + len_w + len(taps_w) - 1, cin))
            sub = hwio[jnp.asarray(taps_h)][:, jnp.asarray(taps_w)]
            cols.append(conv2d(window, sub, cpu_path=True))
        rows.append(jnp.stack(cols, axis=3))
    y = jnp.stack(rows, axis=2).reshape(n, len_h * stride, len_w * stride, -1)
    return y[:, :out_h, :out_w]
