"""Metrics against values computed by hand or by independent loop implementations."""

import math

import numpy as np
import pytest

from pix2pixhd_jax.evaluation import metrics

# ----- confusion matrix ------------------------------------------------------------------

# 3 classes; 255 is ignored. Counted pixels (true, pred):
#   (0,0) (0,1) (1,1) (1,1) / (2,2) (2,0) [255 skipped] (1,1)
# Rows = truth:  0: [1, 1, 0]   1: [0, 3, 0]   2: [1, 0, 1]
# Pixel accuracy = (1 + 3 + 1) / 7 = 5/7.
# IoU_0 = TP 1 / (TP 1 + FP 1 + FN 1) = 1/3
# IoU_1 = 3 / (3 + FP 1 + FN 0) = 3/4
# IoU_2 = 1 / (1 + FP 0 + FN 1) = 1/2
# mean IoU = (1/3 + 3/4 + 1/2) / 3 = 19/36
TRUE = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
PRED = np.array([[0, 1, 1, 1], [2, 0, 0, 1]])


def test_confusion_matrix_by_hand():
    cm = metrics.ConfusionMatrix(3).update(PRED, TRUE)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    assert cm.total == 7
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 3 / 4, 1 / 2])
    assert cm.mean_iou() == pytest.approx(19 / 36)
    np.testing.assert_allclose(cm.class_accuracy(), [1 / 2, 1, 1 / 2])


def test_absent_classes_are_left_out_of_the_mean_and_out_of_range_truth_is_ignored():
    # Class 3 is in neither truth nor prediction: no IoU, not in the mean. A truth id 7
    # (>= num_classes) is skipped like 255, whatever was predicted there.
    true = np.concatenate([TRUE, [[7, 7, 7, 7]]])
    pred = np.concatenate([PRED, [[3, 0, 1, 2]]])
    cm = metrics.ConfusionMatrix(4).update(pred, true)
    assert np.isnan(cm.iou()[3])
    assert cm.mean_iou() == pytest.approx(19 / 36)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)


def test_a_class_only_predicted_counts_with_iou_zero():
    # One more pixel: truth 0, predicted 3. IoU_3 = 0 and it joins the mean;
    # IoU_0 becomes 1 / (1 + 1 + 2) = 1/4.
    cm = metrics.ConfusionMatrix(4).update(PRED, TRUE).update(np.array([3]), np.array([0]))
    np.testing.assert_allclose(cm.iou(), [1 / 4, 3 / 4, 1 / 2, 0])
    assert cm.mean_iou() == pytest.approx((1 / 4 + 3 / 4 + 1 / 2 + 0) / 4)
    assert cm.pixel_accuracy() == pytest.approx(5 / 8)


def test_streaming_equals_one_update_and_merge():
    rng = np.random.default_rng(0)
    true, pred = rng.integers(0, 5, (4, 9, 7)), rng.integers(0, 5, (4, 9, 7))
    whole = metrics.ConfusionMatrix(5).update(pred, true)
    parts = metrics.ConfusionMatrix(5)
    for t, p in zip(true, pred):
        parts.update(p, t)
    np.testing.assert_array_equal(whole.matrix, parts.matrix)
    half = metrics.ConfusionMatrix(5).update(pred[:2], true[:2])
    half.merge(metrics.ConfusionMatrix(5).update(pred[2:], true[2:]))
    np.testing.assert_array_equal(whole.matrix, half.matrix)


def test_bad_predictions_and_shapes_raise():
    with pytest.raises(ValueError, match="outside"):
        metrics.ConfusionMatrix(3).update(np.array([5]), np.array([1]))
    with pytest.raises(ValueError, match="shape"):
        metrics.ConfusionMatrix(3).update(np.zeros(3), np.zeros(4))
    # A bad prediction on an ignored pixel does not matter.
    metrics.ConfusionMatrix(3).update(np.array([255]), np.array([255]))


# ----- Frechet distance -----------------------------------------------------------------

# Diagonal covariances: FD = ||mu1 - mu2||^2 + sum(s1 + s2 - 2 sqrt(s1 s2))
# mu1 = [1, 2, 3], mu2 = [0, 2, 5]: ||diff||^2 = 1 + 0 + 4 = 5
# s1 = [1, 4, 9], s2 = [4, 1, 1]: (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6) = 6
# FD = 11
MU1, MU2 = np.array([1.0, 2, 3]), np.array([0.0, 2, 5])
S1, S2 = np.diag([1.0, 4, 9]), np.diag([4.0, 1, 1])


def test_frechet_distance_of_diagonal_gaussians():
    assert metrics.frechet_distance(MU1, S1, MU2, S2) == pytest.approx(11.0)


def test_frechet_distance_is_rotation_invariant():
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    fd = metrics.frechet_distance(q @ MU1, q @ S1 @ q.T, q @ MU2, q @ S2 @ q.T)
    assert fd == pytest.approx(11.0, rel=1e-9)


def test_frechet_distance_in_one_dimension():
    # N(m1, a^2) vs N(m2, b^2): (m1 - m2)^2 + (a - b)^2 = 4 + 1
    assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(5.0)


def test_frechet_distance_of_identical_singular_gaussians_is_zero():
    v = np.random.default_rng(2).normal(size=(4, 2))
    sigma = v @ v.T  # rank 2 of 4
    mu = np.arange(4.0)
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-5


def test_frechet_distance_of_stats():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 3)), rng.normal(1.0, 2.0, size=(60, 3))
    got = metrics.frechet_distance_of(metrics.FeatureStats().update(a), metrics.FeatureStats().update(b))
    want = metrics.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert got == pytest.approx(want)


def test_frechet_distance_shape_mismatch():
    with pytest.raises(ValueError, match="shapes"):
        metrics.frechet_distance(MU1, S1, MU2[:2], S2[:2, :2])


# ----- streaming statistics ----------------------------------------------------------------


def test_feature_stats_streaming_equals_numpy():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(103, 6)).astype(np.float32) * 3 + 1e4  # a large offset tests the centring
    stats = metrics.FeatureStats()
    for chunk in np.array_split(data, [1, 10, 11, 60]):
        stats.update(chunk)
    d64 = data.astype(np.float64)
    assert stats.count == 103
    np.testing.assert_allclose(stats.mean, d64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance(), np.cov(d64, rowvar=False), rtol=1e-9, atol=1e-9)
    other = metrics.FeatureStats().update(data[:50]).merge(metrics.FeatureStats().update(data[50:]))
    np.testing.assert_allclose(other.covariance(), stats.covariance(), rtol=1e-9, atol=1e-9)


def test_feature_stats_errors():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.FeatureStats().update(np.ones((1, 3))).covariance()
    with pytest.raises(ValueError, match="size"):
        metrics.FeatureStats(3).update(np.ones((2, 4)))


# ----- KID ----------------------------------------------------------------------------------

# d = 1, k(a, b) = (a b + 1)^3, x = [0, 1], y = [1, 2]:
#   mean_{i!=j} k(x_i, x_j) = k(0, 1) = 1
#   mean_{i!=j} k(y_i, y_j) = k(1, 2) = 27
#   mean_{i,j} k(x_i, y_j) = (k(0,1) + k(0,2) + k(1,1) + k(1,2)) / 4 = (1 + 1 + 8 + 27) / 4 = 9.25
#   MMD^2 = 1 + 27 - 2 * 9.25 = 9.5
def test_kid_by_hand():
    mean, std = metrics.kid(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), num_subsets=3, subset_size=10)
    assert mean == pytest.approx(9.5)
    assert std == pytest.approx(0.0, abs=1e-12)


def _mmd2_loops(x, y):
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_one_full_subset_equals_loop_mmd():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 4)), rng.normal(0.5, 1.0, size=(9, 4))
    # subset_size is capped at 7; with one subset per side of all of x, y's subset is random.
    mean, std = metrics.kid(x, y, num_subsets=1, subset_size=1000, seed=3)
    idx = np.random.default_rng(3)
    ix, iy = idx.choice(7, 7, replace=False), idx.choice(9, 7, replace=False)
    assert mean == pytest.approx(_mmd2_loops(x[ix], y[iy]))
    assert std == 0.0
    assert metrics.mmd2_unbiased(x, y[:7]) == pytest.approx(_mmd2_loops(x, y[:7]))


def test_kid_same_distribution_is_near_zero_and_a_shift_is_positive():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, same_std = metrics.kid(a, b, num_subsets=20, subset_size=200)
    shifted, _ = metrics.kid(a, b + 0.5, num_subsets=20, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 0.05 and shifted > 10 * abs(same)


def test_kid_errors():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.kid(np.ones((1, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="one D"):
        metrics.kid(np.ones((4, 3)), np.ones((5, 2)))


# ----- diversity, PSNR, SSIM ----------------------------------------------------------------


def test_diversity_by_hand():
    # Constant samples 0, 0.5, 1: pair distances 0.5, 1, 0.5 -> mean 2/3.
    samples = np.stack([np.full((4, 5, 3), v) for v in (0.0, 0.5, 1.0)])
    assert metrics.diversity(samples) == pytest.approx(2 / 3)
    assert metrics.diversity((samples * 255).astype(np.uint8)) == pytest.approx(2 / 3, abs=1 / 255)
    assert metrics.diversity(np.stack([samples[0]] * 4)) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        metrics.diversity(samples[:1])


def test_psnr_of_known_mse():
    a = np.zeros((8, 8, 3))
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01 on [0, 1]
    u = np.zeros((8, 8, 3), np.uint8)
    assert metrics.psnr(u, u + 10) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert metrics.psnr(u, u) == float("inf")
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(u, a)


def _ssim_loops(x, y, data_range):
    """Wang et al.'s SSIM, window by window, with the 2-D 11x11 Gaussian (sigma 1.5)."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per_channel = []
    for c in range(x.shape[2]):
        values = []
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                px, py = x[i:i + 11, j:j + 11, c], y[i:i + 11, j:j + 11, c]
                mx, my = (g * px).sum(), (g * py).sum()
                vx, vy = (g * (px - mx) ** 2).sum(), (g * (py - my) ** 2).sum()
                cxy = (g * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
        per_channel.append(np.mean(values))
    return np.mean(per_channel)


def test_ssim_against_a_loop_implementation():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, (14, 13, 2)).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
    want = _ssim_loops(x.astype(np.float64), y.astype(np.float64), 255.0)
    assert metrics.ssim(x, y) == pytest.approx(want, rel=1e-10)
    assert metrics.ssim(x / 255.0, y / 255.0) == pytest.approx(want, rel=1e-10)
    assert metrics.ssim(x[..., 0], y[..., 0]) == pytest.approx(_ssim_loops(x[..., :1] * 1.0, y[..., :1] * 1.0, 255.0))


def test_ssim_identical_is_one_and_small_images_raise():
    x = np.random.default_rng(8).random((12, 16, 3))
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=">= 11"):
        metrics.ssim(x[:10], x[:10])


def test_ssim_against_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    y = np.clip(x.astype(int) + rng.integers(-30, 30, x.shape), 0, 255).astype(np.uint8)
    want = skimage_metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert metrics.ssim(x, y) == pytest.approx(want, rel=1e-7)
