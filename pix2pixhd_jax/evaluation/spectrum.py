"""The power spectrum of generated photos against real ones: grid texture and blur as numbers.

A generator's checkerboard or grid texture (transposed convolutions, nearest upsampling, noise
inputs) is a narrow excess of power at the texture's period; blur is a lack of power at short
periods. Both show in the power spectrum averaged over a split's images, compared with the real
photos' (as Durall et al., "Watch your Up-Convolution", CVPR 2020, and Dzanic et al., "Fourier
spectrum discrepancies in deep network generated images", NeurIPS 2020, compare them).

Conventions:
* the luminance (ITU-R BT.601 weights) on the [0, 1] scale; Welch's estimate of its power
  spectrum: TILE x TILE tiles at half-tile strides (longer where an image would have more than
  MAX_TILES), each with its mean removed and a 2-D Hann window, |FFT|^2 divided by the window's
  energy, averaged over the tiles. Every image gives a spectrum on the same TILE x TILE grid of
  frequencies whatever its size, so a split of mixed sizes averages; an image smaller than a tile
  has none;
* a frequency's period is that of its faster axis, 1 / max(|f_x|, |f_y|) pixels (square rings: a
  2-pixel checkerboard, at (0.5, 0.5) cycles per pixel, has period 2);
* bands are octaves of period, [2, 4), [4, 8), [8, 16) pixels: on the 32-px grid, 735, 208 and
  56 frequencies (longer periods are too few frequencies of a 32-px tile to say much);
* per band, from the spectra averaged over the generated and over the real images:
  `log10_ratio`, log10 of the band's mean power, generated over real (0: as much power as the
  photos; +0.3: twice as much, noise; -0.3: half, blur), and `peak_log10_ratio`, the largest
  log10(generated / real) of any one frequency in the band with `peak_period` its period: a grid
  texture is a narrow peak that the band's mean dilutes. The peak is the maximum of many noisy
  ratios, so it sits above 0 by chance where few tiles are averaged (a handful of small images:
  up to about +0.3; a hundred 256x128 photos: a few hundredths). Ratios are floored at
  10^FLOOR (a generator with next to no power there, e.g. flat pictures).
"""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from pix2pixhd_jax.evaluation.metrics import unit_scale

TILE = 32
MAX_TILES = 512  # per image: larger images are sampled at a longer stride (a 2048x1024 photo: 64 px)
BANDS: Tuple[Tuple[int, int], ...] = ((2, 4), (4, 8), (8, 16))
FLOOR = -6.0
LUMA = np.array([0.299, 0.587, 0.114])


def band_name(band: Tuple[int, int]) -> str:
    return f"{band[0]}-{band[1]}px"


def _luminance(image) -> np.ndarray:
    x = unit_scale(image)
    if x.ndim == 3:
        x = x @ LUMA if x.shape[-1] == 3 else x.mean(-1)
    if x.ndim != 2:
        raise ValueError(f"spectrum: an image is (H, W) or (H, W, C), got shape {np.shape(image)}")
    return x


def power_spectrum(image, tile: int = TILE) -> Optional[np.ndarray]:
    """Welch's (tile, tile) power spectrum of one image's luminance (fft2's frequency order);
    None for an image smaller than a tile."""
    x = _luminance(image)
    h, w = x.shape
    if h < tile or w < tile:
        return None
    window = np.outer(np.hanning(tile), np.hanning(tile))
    stride = max(tile // 2, int(np.ceil(np.sqrt(h * w / MAX_TILES))))
    while len(range(0, h - tile + 1, stride)) * len(range(0, w - tile + 1, stride)) > MAX_TILES:
        stride += 1
    total, count = np.zeros((tile, tile)), 0
    for i in range(0, h - tile + 1, stride):
        row = np.stack([x[i:i + tile, j:j + tile] for j in range(0, w - tile + 1, stride)])
        row = (row - row.mean(axis=(1, 2), keepdims=True)) * window
        total += (np.abs(np.fft.fft2(row)) ** 2).sum(0)
        count += len(row)
    return total / count / np.sum(window ** 2)


def spectra(images, tile: int = TILE) -> np.ndarray:
    """(N, tile, tile): the power spectra of the images large enough for a tile."""
    out = [p for p in (power_spectrum(image, tile) for image in images) if p is not None]
    return np.stack(out) if out else np.zeros((0, tile, tile))


def _log_ratio(g, r):
    """log10(g / r), floored at FLOOR; NaN where r has no power."""
    g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, np.log10(np.maximum(g, r * 10.0 ** FLOOR) / r), np.nan)


def compare(generated, real, bands: Sequence[Tuple[int, int]] = BANDS) -> Dict[str, Optional[Dict[str, float]]]:
    """{band: {log10_ratio, peak_log10_ratio, peak_period}} from the (N, tile, tile) spectra of
    generated and of real images; every band None when either side has no spectrum, a band None
    when the tile holds none of its frequencies or the real photos have no power there."""
    generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if not len(generated) or not len(real):
        return {band_name(b): None for b in bands}
    g, r = generated.mean(0), real.mean(0)
    tile = g.shape[0]
    f = np.abs(np.fft.fftfreq(tile))
    ring = np.maximum(f[:, None], f[None, :])
    per_frequency = _log_ratio(g, r)
    out = {}
    for short, long in bands:
        inside = (ring > 1.0 / long) & (ring <= 1.0 / short) & np.isfinite(per_frequency)
        if not inside.any() or not r[inside].mean() > 0:
            out[band_name((short, long))] = None
            continue
        peak = np.argmax(np.where(inside, per_frequency, -np.inf))
        out[band_name((short, long))] = {
            "log10_ratio": float(_log_ratio(g[inside].mean(), r[inside].mean())),
            "peak_log10_ratio": float(per_frequency.flat[peak]),
            "peak_period": float(1.0 / ring.flat[peak]),
        }
    return out
