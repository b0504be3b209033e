"""VGG19's feature layers, the network of pix2pixHD's perceptual (VGG) loss.

The network is torchvision's ``vgg19().features[0:30]`` in NHWC: 3x3 convs (padding 1,
with bias) each followed by ReLU, and 2x2/stride-2 max-pools at torchvision indices 4, 9,
18 and 27. It returns the five taps relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, i.e. the
outputs of ``features[0:2]``, ``[2:7]``, ``[7:12]``, ``[12:21]`` and ``[21:30]``. Each conv
is a ``layers.Conv`` named after its torchvision index (``features_0``, ``features_2``, ...,
``features_28``), so torchvision's ``features.{i}.weight`` (OIHW) is flax's
``features_{i}/conv/kernel`` (HWIO) and ``features.{i}.bias`` is ``features_{i}/conv/bias``.

Like the pix2pixHD reference, torchvision weights see the images as they are, in [-1, 1],
without ImageNet normalisation; Keras' weights expect Keras' "caffe" preprocessing, which the
module applies itself with ``preprocess="caffe"``. The weight files are read in
``pix2pixhd_jax.weights.vgg19``; the loss is ``pix2pixhd_jax.training.losses.vgg_loss``.
"""

from typing import Any, List

import flax.linen as nn
import jax.numpy as jnp

from pix2pixhd_jax.models.layers import Conv, layer_remat

# torchvision's vgg19().features[0:30]: conv indices, their output channels, pool indices.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28)
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512)
POOL_INDICES = (4, 9, 18, 27)
# Indices of the ReLUs whose outputs are the taps relu1_1 ... relu5_1.
TAP_INDICES = (1, 6, 11, 20, 29)
TAP_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# Keras' "caffe" preprocessing: BGR channel means on the [0, 255] scale.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESS_MODES = ("none", "caffe")


def conv_specs():
    """(torchvision index, in channels, out channels) of the 13 convs in features[0:30]."""
    ins = (3,) + CONV_CHANNELS[:-1]
    return list(zip(CONV_INDICES, ins, CONV_CHANNELS))


def caffe_preprocess(x):
    """Keras' VGG 'caffe' preprocessing for images in [-1, 1]: [0, 255], RGB -> BGR, minus BGR mean."""
    x = (x + 1.0) * 127.5
    return x[..., ::-1] - jnp.asarray(CAFFE_BGR_MEAN, x.dtype)


class VGG19Features(nn.Module):
    """torchvision's vgg19().features[0:30] in NHWC; returns the 5 taps relu1_1 ... relu5_1.

    Input: NHWC RGB images in [-1, 1]. ``preprocess``: "none" feeds them as they are (the
    pix2pixHD reference, torchvision weights), "caffe" applies Keras' preprocessing (Keras
    weights). ``dtype`` is the compute dtype; parameters stay float32.
    """

    preprocess: str = "none"
    remat: Any = "none"  # train.remat: with 'full', each conv + ReLU (+ pool) is recomputed from its input
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x) -> List[jnp.ndarray]:
        if self.preprocess == "caffe":
            x = caffe_preprocess(x.astype(jnp.float32))
        elif self.preprocess != "none":
            raise ValueError(f"VGG19Features.preprocess={self.preprocess!r} is not one of {PREPROCESS_MODES}")
        x = x.astype(self.dtype)
        channels = dict(zip(CONV_INDICES, CONV_CHANNELS))

        def conv_relu(mdl, x, i):
            x = nn.relu(Conv(channels[i], 3, padding=1, dtype=self.dtype, name=f"features_{i}")(x))
            return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID") if i + 2 in POOL_INDICES else x

        layer = layer_remat(conv_relu, self.remat, static_argnums=(2,))
        taps = []
        for i in CONV_INDICES:  # conv i, its ReLU i + 1 and the pool at i + 2 where there is one
            x = layer(self, x, i)
            if i + 1 in TAP_INDICES:
                taps.append(x)
        return taps

