"""evaluation.spectrum: a grid texture shows as a peak at its period, blur lowers the short
periods' power, and images of any size give spectra that average."""

import numpy as np
import pytest

from pix2pixhd_jax.evaluation import spectrum


def photos(n=6, h=128, w=256, seed=0):
    """Photo-like images, uint8 RGB: power falling as 1 / f^a, a drawn per image in [1.6, 2.4]
    (photos' spectra fall about as 1 / f^2), contrast drawn per image."""
    rng = np.random.default_rng(seed)
    radius = np.maximum(np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]), 1.0 / max(h, w))
    out = []
    for _ in range(n):
        amplitude = radius ** -(rng.uniform(1.6, 2.4) / 2)
        x = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((h, w)))))
        x = (x - x.mean()) / x.std() * rng.uniform(25, 50) + 128
        out.append(np.repeat(np.clip(x, 0, 255)[..., None], 3, -1).astype(np.uint8))
    return np.stack(out)


def compare(generated, real):
    return spectrum.compare(spectrum.spectra(generated), spectrum.spectra(real))


def checkered(images, period, amplitude=10.0):
    h, w = images.shape[1:3]
    yy, xx = np.mgrid[:h, :w]
    half = period / 2
    grid = amplitude * np.sign(np.sin(np.pi * (xx + 0.5) / half)) * np.sign(np.sin(np.pi * (yy + 0.5) / half))
    return np.clip(images.astype(np.float64) + grid[None, :, :, None], 0, 255).astype(np.uint8)


def test_real_photos_against_themselves_are_level_in_every_band():
    real = photos()
    for band in compare(real, real).values():
        assert band["log10_ratio"] == pytest.approx(0.0, abs=1e-12)
        assert band["peak_log10_ratio"] == pytest.approx(0.0, abs=1e-12)


def test_photos_of_other_scenes_have_no_peak():
    result = compare(photos(n=40, seed=1), photos(n=40, seed=2))
    # Contrast differs from set to set (the band means move together); no frequency stands out.
    assert all(abs(b["log10_ratio"]) < 0.15 and b["peak_log10_ratio"] < 0.3 for b in result.values()), result


@pytest.mark.parametrize("period, band", [(2, "2-4px"), (6, "4-8px"), (10, "8-16px")])
def test_a_faint_grid_texture_peaks_at_its_period(period, band):
    real = photos(n=20, seed=1)
    result = compare(checkered(real, period), real)
    assert result[band]["peak_log10_ratio"] > 0.4, result  # 2.5 times the photos' power at one frequency
    assert result[band]["peak_period"] == pytest.approx(period, rel=0.2)
    # A square wave's harmonics (periods p/3, p/5, ...) fall in the 2-4 px band for p 6 and 10.
    quiet = [b for name, b in result.items() if name != band and not (period > 2 and name == "2-4px")]
    assert all(b["peak_log10_ratio"] < 0.3 for b in quiet), result


def test_blur_lowers_the_short_periods():
    real = photos()
    blurred = real.astype(np.float64)
    for axis in (1, 2):  # a 5-tap box blur along each axis
        blurred = sum(np.roll(blurred, s, axis) for s in range(-2, 3)) / 5
    r = {k: v["log10_ratio"] for k, v in compare(blurred.astype(np.uint8), real).items()}
    assert r["2-4px"] < -1.0 and r["4-8px"] < -0.3
    assert r["2-4px"] < r["4-8px"] < r["8-16px"]


def test_spectra_of_any_size_average_and_small_images_have_none():
    rng = np.random.default_rng(1)
    small, large = (rng.normal(0.5, 0.1, (n, h, w, 3)) for n, h, w in ((16, 64, 64), (1, 1024, 2048)))
    # White noise: the same power at every frequency, whatever the image's size (the large one
    # sampled at a longer stride).
    np.testing.assert_allclose(spectrum.spectra(small).mean((0, 1, 2)), spectrum.spectra(large).mean((0, 1, 2)),
                               rtol=0.1)
    assert spectrum.spectra(list(small[:1]) + [np.zeros((16, 512, 3))]).shape == (1, 32, 32)
    assert all(v is None for v in spectrum.compare(spectrum.spectra([]), spectrum.spectra(small)).values())
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        spectrum.power_spectrum(np.zeros((2, 64, 64, 3)))


def test_flat_pictures_are_floored_and_flat_photos_give_no_ratio():
    real, flat = photos(n=2), np.full((2, 128, 256, 3), 128, np.uint8)
    for band in compare(flat, real).values():
        assert band["log10_ratio"] == spectrum.FLOOR and band["peak_log10_ratio"] == spectrum.FLOOR
    assert all(v is None for v in compare(real, flat).values())


def test_evaluations_scalars_name_each_band_and_skip_an_empty_one():
    from pix2pixhd_jax.evaluation.evaluate import scalars

    seg = {"mean_iou": 0.5, "pixel_accuracy": 0.9}
    band = {"log10_ratio": -0.25, "peak_log10_ratio": 0.5, "peak_period": 2.0}
    out = scalars({"segmentation": {"generated": seg, "real": seg}, "frechet_distance_segmenter_features": 1.0,
                   "paired": {"psnr": 20.0, "ssim": 0.5}, "fid": None, "spectrum": {"2-4px": band, "8-16px": None}})
    assert out["eval/spectrum_log10_ratio_2-4px"] == -0.25 and out["eval/spectrum_peak_log10_ratio_2-4px"] == 0.5
    assert not any("8-16px" in k for k in out)
