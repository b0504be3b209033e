"""The evaluation segmenter: photo -> label ids (the paper's segmentation score, sec. 4.1).

The paper scores generated photos by running an off-the-shelf segmentation network (PSPNet
for Cityscapes) on them and comparing its output with the input label map; the same network
on the real photos is the oracle. No such network can be downloaded here, so this is a small
U-Net trained on the dataset's real training photos (`train-segmenter`); what matters for the
comparison is that one fixed network judges every method.

Encoder: a stem conv and `depth` stride-2 stages (channels doubling), each two 3x3 convs with
GroupNorm and ReLU; decoder: bilinear x2, concatenation with the skip, two convs; a 1x1 conv to
the class logits. Also returns the bottleneck feature map, the segmenter's feature space for the
Frechet distance `evaluate` reports beside FID.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = nn.Conv(self.features, (3, 3), strides=self.stride if i == 0 else 1, padding=1, use_bias=False)(x)
            x = nn.GroupNorm(num_groups=min(8, self.features))(x)
            x = nn.relu(x)
        return x


class Segmenter(nn.Module):
    num_classes: int
    width: int = 32
    depth: int = 3

    @nn.compact
    def __call__(self, x):
        """x: (N, H, W, 3) photos in [-1, 1], H and W multiples of 2**depth.
        Returns (logits (N, H, W, num_classes), bottleneck (N, H/2**depth, W/2**depth, C))."""
        skips = []
        x = ConvBlock(self.width)(x)
        for d in range(self.depth):
            skips.append(x)
            x = ConvBlock(self.width * 2 ** (d + 1), stride=2)(x)
        bottleneck = x
        for d in reversed(range(self.depth)):
            skip = skips[d]
            x = jax.image.resize(x, (x.shape[0],) + skip.shape[1:3] + (x.shape[-1],), "bilinear")
            x = ConvBlock(self.width * 2 ** d)(jnp.concatenate([x, skip], axis=-1))
        logits = nn.Conv(self.num_classes, (1, 1))(x)
        return logits, bottleneck
