"""Evaluation metrics (numpy/scipy only; no TensorFlow, no torch, no jax).

Conventions, one per metric:

* ``ConfusionMatrix``: rows are ground truth, columns predictions. Pixels whose ground
  truth is the ignore label (255 by default), negative, or ``>= num_classes`` are skipped.
  Predictions must lie in ``[0, num_classes)`` for the pixels that count (a segmenter's
  argmax always does); anything else raises ``ValueError`` rather than being guessed at.
  Pixel accuracy is trace / total. IoU_c = TP / (TP + FP + FN); a class with no ground
  truth pixel and no predicted pixel has no IoU (NaN) and is left out of the mean IoU
  (the Cityscapes / pix2pixHD convention); a class present in only one of the two has
  IoU 0 and counts.
* ``frechet_distance``: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), computed as
  pytorch-fid does (scipy.linalg.sqrtm; eps * I added to both covariances when the
  product's square root is not finite; an imaginary part is dropped when the diagonal's
  is below 1e-3, and is an error otherwise).
* ``FeatureStats``: streaming mean and covariance in float64 (Chan et al.'s pairwise
  update of the centred sums), covariance with ddof=1 like ``np.cov`` and pytorch-fid.
* ``kid``: the unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets drawn without replacement (Binkowski et al. 2018, as in
  torch-fidelity and clean-fid); returns (mean, std over subsets).
* ``diversity``: the mean L1 distance over all pairs of K samples of one label map, on
  the [0, 1] pixel scale.
* ``psnr`` / ``ssim``: per image; uint8 images have data range 255, float images are
  taken to be in [0, 1]. SSIM is Wang et al.'s: 11x11 Gaussian window, sigma 1.5,
  K1 = 0.01, K2 = 0.03, population (not sample) covariances, the mean over the valid
  region of each channel and then over channels; the same as scikit-image's
  ``structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=R, channel_axis=-1)``.
"""

import logging
import warnings
from typing import Optional, Tuple

import numpy as np
from scipy import linalg, ndimage

IGNORE_LABEL = 255


# ----- segmentation: confusion matrix -------------------------------------------------


class ConfusionMatrix:
    """Streaming confusion matrix of a segmenter's predictions; see the module docstring."""

    def __init__(self, num_classes: int, ignore_label: Optional[int] = IGNORE_LABEL):
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes={num_classes} should be >= 1")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, true) -> "ConfusionMatrix":
        """Add one label map or a batch of them (any matching shapes of integer ids)."""
        pred, true = np.asarray(pred), np.asarray(true)
        if pred.shape != true.shape:
            raise ValueError(f"ConfusionMatrix.update: predictions {pred.shape} and ground truth "
                             f"{true.shape} differ in shape")
        pred, true = pred.reshape(-1).astype(np.int64), true.reshape(-1).astype(np.int64)
        keep = (true >= 0) & (true < self.num_classes)
        if self.ignore_label is not None:
            keep &= true != self.ignore_label
        pred, true = pred[keep], true[keep]
        bad = (pred < 0) | (pred >= self.num_classes)
        if bad.any():
            raise ValueError(f"ConfusionMatrix.update: predicted id {int(pred[bad][0])} is outside "
                             f"[0, {self.num_classes}) on a pixel whose ground truth counts")
        n = self.num_classes
        self.matrix += np.bincount(true * n + pred, minlength=n * n).reshape(n, n)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (e.g. from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError("ConfusionMatrix.merge: different numbers of classes")
        self.matrix += other.matrix
        return self

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def pixel_accuracy(self) -> float:
        """Correct pixels / counted pixels (NaN before any pixel is counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes in neither the ground truth nor the predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        out = np.full(self.num_classes, np.nan)
        np.divide(tp, union, out=out, where=union > 0)
        return out

    def mean_iou(self) -> float:
        """Mean of ``iou()`` over the classes present in the ground truth or the predictions."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall TP / (TP + FN); NaN for classes absent from the ground truth."""
        gt = self.matrix.sum(1).astype(np.float64)
        out = np.full(self.num_classes, np.nan)
        np.divide(np.diag(self.matrix), gt, out=out, where=gt > 0)
        return out

    def summary(self) -> dict:
        return {"pixel_accuracy": self.pixel_accuracy(), "mean_iou": self.mean_iou(),
                "mean_class_accuracy": float(np.nanmean(self.class_accuracy())) if self.total else float("nan")}


# ----- feature statistics, FID, KID -----------------------------------------------------


class FeatureStats:
    """Streaming mean and covariance of feature vectors, in float64.

    ``update(batch)`` takes (N, D) (or (N, ..., D), flattened to rows). Each batch's mean
    and centred scatter matrix are merged into the running ones (Chan, Golub & LeVeque's
    pairwise update), which avoids the cancellation of raw sums of squares.
    """

    def __init__(self, dim: Optional[int] = None):
        self.dim = dim
        self.count = 0
        self.mean = None if dim is None else np.zeros(dim, np.float64)
        self._scatter = None if dim is None else np.zeros((dim, dim), np.float64)

    def update(self, features) -> "FeatureStats":
        x = np.asarray(features, np.float64)
        x = x.reshape(-1, x.shape[-1]) if x.ndim != 1 else x.reshape(1, -1)
        if self.dim is None:
            self.__init__(x.shape[1])
        if x.shape[1] != self.dim:
            raise ValueError(f"FeatureStats.update: features of size {x.shape[1]}, expected {self.dim}")
        if len(x) == 0:
            return self
        mean = x.mean(0)
        centred = x - mean
        return self._merge(len(x), mean, centred.T @ centred)

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.count == 0:
            return self
        if self.dim is None:
            self.__init__(other.dim)
        return self._merge(other.count, other.mean, other._scatter)

    def _merge(self, n, mean, scatter):
        if len(mean) != self.dim:
            raise ValueError(f"FeatureStats: features of size {len(mean)} do not match {self.dim}")
        total = self.count + n
        delta = mean - self.mean
        self._scatter = self._scatter + scatter + np.outer(delta, delta) * (self.count * n / total)
        self.mean = self.mean + delta * (n / total)
        self.count = total
        return self

    def covariance(self) -> np.ndarray:
        """Unbiased covariance (ddof=1), as np.cov(features, rowvar=False)."""
        if self.count < 2:
            raise ValueError(f"FeatureStats: a covariance needs at least 2 samples, have {self.count}")
        return self._scatter / (self.count - 1)

    def mu_sigma(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.mean.copy(), self.covariance()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: shapes mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape} "
                         "do not match")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # A singular product is expected with few samples; frechet_distance_of says so once, in words.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            # The product is (nearly) singular: regularise both covariances, as pytorch-fid does.
            offset = np.eye(len(mu1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"frechet_distance: sqrtm has an imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


_warned_few_samples = False


def frechet_distance_of(stats1: FeatureStats, stats2: FeatureStats) -> float:
    """``frechet_distance`` of two ``FeatureStats`` (FID when both hold Inception pool3 features).
    With fewer samples than feature dimensions the covariances are singular: the distance is
    still computed (as pytorch-fid does) and the log says, once per process, why it is unreliable."""
    global _warned_few_samples
    count, dim = min(stats1.count, stats2.count), len(stats1.mean)
    if count <= dim and not _warned_few_samples:
        _warned_few_samples = True
        logging.warning("Frechet distance from %d feature vectors of %d dimensions: with no more vectors than "
                        "dimensions the covariances are singular, so the distance is noisy and biased; compare "
                        "such numbers only between runs on the same split (FID is usually quoted on thousands "
                        "of images).", count, dim)
    return frechet_distance(*stats1.mu_sigma(), *stats2.mu_sigma())


def polynomial_kernel(x, y) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for the rows of x and y (d the feature size)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD^2 of two equal-size samples under ``polynomial_kernel``:
    mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2.0 * kxy.sum() / (m * m))


def kid(feats1, feats2, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> Tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of ``mmd2_unbiased`` over ``num_subsets`` pairs of
    random subsets, each drawn without replacement, of size min(subset_size, n1, n2)."""
    x, y = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"kid: features should be (N, D) with one D, got {x.shape} and {y.shape}")
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"kid: needs at least 2 samples in each set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


# ----- image metrics ----------------------------------------------------------------------


def unit_scale(images) -> np.ndarray:
    """uint8 or uint16 levels -> [0, 1]; floats are taken to be in [0, 1] already."""
    images = np.asarray(images)
    if images.dtype in (np.uint8, np.uint16):
        return images.astype(np.float64) / float(np.iinfo(images.dtype).max)
    return images.astype(np.float64)


def _data_range(a, b, data_range):
    if data_range is not None:
        return float(data_range)
    if np.asarray(a).dtype != np.asarray(b).dtype:
        raise ValueError(f"images of dtypes {np.asarray(a).dtype} and {np.asarray(b).dtype}: pass data_range")
    dtype = np.asarray(a).dtype
    return float(np.iinfo(dtype).max) if dtype in (np.uint8, np.uint16) else 1.0


def diversity(samples) -> float:
    """Mean L1 distance over all pairs of K samples (K, H, W, C) of one label map, on the
    [0, 1] scale (uint8 samples are divided by 255; float samples must be in [0, 1])."""
    x = unit_scale(samples)
    k = len(x)
    if k < 2:
        raise ValueError(f"diversity: needs at least 2 samples, got {k}")
    x = x.reshape(k, -1)
    i, j = np.triu_indices(k, 1)
    return float(np.mean([np.abs(x[a] - x[b]).mean() for a, b in zip(i, j)]))


def psnr(a, b, data_range: Optional[float] = None) -> float:
    """10 log10(R^2 / MSE) of one pair of images (inf when they are identical)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"psnr: shapes {a64.shape} and {b64.shape} differ")
    r = _data_range(a, b, data_range)
    mse = np.mean((a64 - b64) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(r * r / mse))


SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian, sampled at integer offsets; the 2-D window is its outer product."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(r ** 2) / (2 * sigma ** 2))
    return w / w.sum()


def _filter_valid(x, w):
    """Separable correlation of (H, W, C) with the window, keeping only fully covered pixels."""
    for axis in (0, 1):
        x = ndimage.correlate1d(x, w, axis=axis, mode="constant")
    p = (len(w) - 1) // 2
    return x[p:x.shape[0] - p, p:x.shape[1] - p]


def ssim(a, b, data_range: Optional[float] = None) -> float:
    """Mean SSIM of two (H, W) or (H, W, C) images; H and W must be >= 11."""
    r = _data_range(a, b, data_range)
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes {x.shape} and {y.shape} differ")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if x.ndim != 3 or min(x.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: expects (H, W) or (H, W, C) with H, W >= {SSIM_WINDOW}, got {np.shape(a)}")
    w = gaussian_window_1d()
    mx, my = _filter_valid(x, w), _filter_valid(y, w)
    vx = _filter_valid(x * x, w) - mx * mx
    vy = _filter_valid(y * y, w) - my * my
    cxy = _filter_valid(x * y, w) - mx * my
    c1, c2 = (SSIM_K1 * r) ** 2, (SSIM_K2 * r) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean(axis=(0, 1)).mean())
