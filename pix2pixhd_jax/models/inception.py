"""The FID Inception-v3 (pytorch-fid's network) in Flax linen, NHWC, up to pool3 (2048-d).

This is the network behind the standard FID numbers: TensorFlow's 2015-12-05 Inception
graph as pytorch-fid ports it (torchvision's Inception3 with its FID patches):

* Mixed_5b/5c/5d (FIDInceptionA), Mixed_6b..6e (FIDInceptionC) and Mixed_7b
  (FIDInceptionE_1) average-pool their pool branch over 3x3, stride 1, padding 1 with
  ``count_include_pad=False`` (the padded zeros are not counted), like TensorFlow;
* Mixed_7c (FIDInceptionE_2) max-pools that branch instead (3x3, stride 1, padding 1);
* Mixed_6a and Mixed_7a are torchvision's InceptionB and InceptionD unchanged;
* every conv is bias-free, followed by batch norm (eps 0.001, running statistics) and ReLU;
* pool3 is the mean over the spatial positions of Mixed_7c.

Modules are named after the PyTorch attributes (``Mixed_5b/branch5x5_2/conv``,
``Conv2d_1a_3x3/bn``), so the state-dict key ``Mixed_5b.branch5x5_2.conv.weight`` is
``params/Mixed_5b/branch5x5_2/conv/kernel``; ``pix2pixhd_jax.weights.inception`` reads the
weights. Preprocessing is pytorch-fid's: images in [0, 1] are resized to 299x299 by
bilinear interpolation as ``F.interpolate(mode='bilinear', align_corners=False)`` does it
(no antialiasing), then mapped to [-1, 1]. Inputs must be at least 75x75 when the resize
is off.
"""

from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FID_SIZE = 299
POOL3_DIM = 2048
MIN_SIZE = 75
BN_EPS = 1e-3


# ----- preprocessing -------------------------------------------------------------------


def _bilinear_taps(in_size: int, out_size: int):
    """Source indices and weights of PyTorch's bilinear resize (align_corners=False) on one axis.

    The source coordinate is max(scale * (i + 0.5) - 0.5, 0) with scale = in / out, computed
    as PyTorch's CPU kernel does: scale in float32, the rest fused (one rounding to float32).
    That gave PyTorch 2.x's CPU weights bit for bit on every size tested (float32 without the
    fused step was off by an ulp of the coordinate, ~2e-6 in the weights).
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    src = np.maximum(np.float32(scale * (np.arange(out_size) + 0.5) - 0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i1, np.float32(1) - w1, w1


def resize_bilinear_torch(x, size: Tuple[int, int]):
    """NHWC resize equal to ``F.interpolate(x, size, mode='bilinear', align_corners=False)``."""
    for axis, out_size in ((1, size[0]), (2, size[1])):
        if x.shape[axis] == out_size:
            continue  # PyTorch's source coordinates are then the pixels themselves
        i0, i1, w0, w1 = _bilinear_taps(x.shape[axis], out_size)
        shape = [1] * x.ndim
        shape[axis] = out_size
        x = (jnp.take(x, i0, axis=axis) * w0.reshape(shape).astype(x.dtype)
             + jnp.take(x, i1, axis=axis) * w1.reshape(shape).astype(x.dtype))
    return x


def to_unit_range(images):
    """uint8 or uint16 images -> float32 in [0, 1]; float images are taken to be in [0, 1] already.
    One-channel images are repeated to three (the network sees RGB)."""
    images = jnp.asarray(images)
    if images.dtype in (jnp.uint8, jnp.uint16):
        images = images.astype(jnp.float32) / float(jnp.iinfo(images.dtype).max)
    images = images.astype(jnp.float32)
    return jnp.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def fid_preprocess(images, resize: bool = True, normalize: bool = True):
    """pytorch-fid's input transform on NHWC images in [0, 1] (or uint8)."""
    x = to_unit_range(images)
    if resize:
        x = resize_bilinear_torch(x, (FID_SIZE, FID_SIZE))
    if normalize:
        x = 2.0 * x - 1.0
    return x


# ----- network ---------------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Bias-free conv, batch norm with running statistics (eps 0.001), ReLU."""

    features: int
    kernel: Any = 1
    stride: int = 1
    padding: Any = 0
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        ph, pw = _pair(self.padding)
        x = nn.Conv(self.features, _pair(self.kernel), strides=_pair(self.stride), padding=((ph, ph), (pw, pw)),
                    use_bias=False, precision=self.precision, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3_no_pad_count(x):
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_same(x):
    return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_stride2(x):
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _Block(nn.Module):
    precision: Any = jax.lax.Precision.HIGHEST

    def conv(self, name, features, kernel=1, stride=1, padding=0):
        return BasicConv2d(features, kernel, stride, padding, precision=self.precision, name=name)


class FIDInceptionA(_Block):
    pool_features: int = 32

    @nn.compact
    def __call__(self, x):
        b1 = self.conv("branch1x1", 64)(x)
        b5 = self.conv("branch5x5_2", 64, 5, padding=2)(self.conv("branch5x5_1", 48)(x))
        b3 = self.conv("branch3x3dbl_1", 64)(x)
        b3 = self.conv("branch3x3dbl_3", 96, 3, padding=1)(self.conv("branch3x3dbl_2", 96, 3, padding=1)(b3))
        bp = self.conv("branch_pool", self.pool_features)(_avg_pool_3x3_no_pad_count(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    @nn.compact
    def __call__(self, x):
        b3 = self.conv("branch3x3", 384, 3, stride=2)(x)
        bd = self.conv("branch3x3dbl_1", 64)(x)
        bd = self.conv("branch3x3dbl_3", 96, 3, stride=2)(self.conv("branch3x3dbl_2", 96, 3, padding=1)(bd))
        return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionC(_Block):
    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = self.conv("branch1x1", 192)(x)
        b7 = self.conv("branch7x7_1", c7)(x)
        b7 = self.conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7)
        b7 = self.conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7)
        bd = self.conv("branch7x7dbl_1", c7)(x)
        bd = self.conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd)
        bd = self.conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd)
        bd = self.conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd)
        bd = self.conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd)
        bp = self.conv("branch_pool", 192)(_avg_pool_3x3_no_pad_count(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    @nn.compact
    def __call__(self, x):
        b3 = self.conv("branch3x3_2", 320, 3, stride=2)(self.conv("branch3x3_1", 192)(x))
        b7 = self.conv("branch7x7x3_1", 192)(x)
        b7 = self.conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7)
        b7 = self.conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7)
        b7 = self.conv("branch7x7x3_4", 192, 3, stride=2)(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class FIDInceptionE(_Block):
    """FIDInceptionE_1 (pool='avg', count_include_pad=False) or FIDInceptionE_2 (pool='max')."""

    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        b1 = self.conv("branch1x1", 320)(x)
        b3 = self.conv("branch3x3_1", 384)(x)
        b3 = jnp.concatenate([self.conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3),
                              self.conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3)], axis=-1)
        bd = self.conv("branch3x3dbl_2", 384, 3, padding=1)(self.conv("branch3x3dbl_1", 448)(x))
        bd = jnp.concatenate([self.conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd),
                              self.conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd)], axis=-1)
        pooled = _avg_pool_3x3_no_pad_count(x) if self.pool == "avg" else _max_pool_3x3_same(x)
        bp = self.conv("branch_pool", 192)(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3(output_blocks=[3]): NHWC images -> pool3 features (N, 2048).

    Input: images in [0, 1] (float) or uint8. ``resize_input`` and ``normalize_input`` are
    pytorch-fid's flags (resize to 299x299, map to [-1, 1]); both on for standard FID.
    ``precision`` is the convs' matmul precision: HIGHEST keeps float32 on GPUs/TPUs that
    would otherwise use TF32/bfloat16 passes.
    """

    resize_input: bool = True
    normalize_input: bool = True
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, images):
        x = fid_preprocess(images, self.resize_input, self.normalize_input)
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(f"FIDInceptionV3: inputs of {x.shape[1]}x{x.shape[2]} are below Inception-v3's "
                             f"{MIN_SIZE}x{MIN_SIZE} minimum; keep resize_input=True")
        p = self.precision
        conv = lambda name, *a, **k: BasicConv2d(*a, precision=p, name=name, **k)  # noqa: E731
        x = conv("Conv2d_1a_3x3", 32, 3, stride=2)(x)
        x = conv("Conv2d_2a_3x3", 32, 3)(x)
        x = conv("Conv2d_2b_3x3", 64, 3, padding=1)(x)
        x = _max_pool_3x3_stride2(x)
        x = conv("Conv2d_3b_1x1", 80, 1)(x)
        x = conv("Conv2d_4a_3x3", 192, 3)(x)
        x = _max_pool_3x3_stride2(x)
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = FIDInceptionA(precision=p, pool_features=pool_features, name=name)(x)
        x = InceptionB(precision=p, name="Mixed_6a")(x)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = FIDInceptionC(precision=p, channels_7x7=c7, name=name)(x)
        x = InceptionD(precision=p, name="Mixed_7a")(x)
        x = FIDInceptionE(precision=p, pool="avg", name="Mixed_7b")(x)
        x = FIDInceptionE(precision=p, pool="max", name="Mixed_7c")(x)
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def expected_variables():
    """The variables' shapes (a pytree of ShapeDtypeStruct), without computing anything."""
    probe = jnp.zeros((1, MIN_SIZE, MIN_SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda: FIDInceptionV3(resize_input=False).init(jax.random.PRNGKey(0), probe))


def feature_fn(module: FIDInceptionV3, variables):
    """A jitted images -> pool3 features (N, 2048) float32 function (images NHWC, [0, 1] or uint8)."""
    apply = jax.jit(module.apply)

    def features(images: Sequence) -> np.ndarray:
        return np.asarray(apply(variables, jnp.asarray(images)))

    return features
