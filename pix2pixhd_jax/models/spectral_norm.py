"""Spectral normalisation (Miyato et al. 2018) as torch.nn.utils.spectral_norm computes it, and the
conv that SPADE and OASIS wrap in it.

torch keeps the raw weight (`weight_orig`) and two vectors, `weight_u` (output side) and
`weight_v` (input side, in the order of the weight reshaped to (out, in*kh*kw)). A forward pass
in training runs one power iteration that updates u and v, then divides the weight by
sigma = u . W v; in eval it divides by u . W v with the stored u and v and changes nothing. The
gradient flows through W in sigma, not through u and v.

flax's nn.SpectralNorm differs in what matters for imported checkpoints and for eval: it stores u
and sigma but no v, runs the power iteration in eval too (only not storing it), and normalises
with rsqrt(|x|^2 + eps) instead of x / max(|x|, eps). So here u and v are stored as torch stores
them (collection 'batch_stats', next to batch norm's statistics, so the train step threads both
alike), and eval does no iteration.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pixhd_jax.models.conv import conv2d

EPS = 1e-12  # torch's spectral_norm eps

# SPADE's and OASIS's init (init_type 'xavier', init_variance 0.02): xavier normal with gain
# 0.02 for every conv, biases zero.
xavier_init = nn.initializers.variance_scaling(0.02 ** 2, "fan_avg", "normal")


def _normalize(x):
    """F.normalize(x, dim=0, eps): x / max(|x|, eps)."""
    return x / jnp.maximum(jnp.linalg.norm(x), EPS)


def torch_weight_matrix(kernel):
    """An HWIO kernel as torch's (out, in*kh*kw) matrix, columns in torch's (in, kh, kw) order."""
    return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)


def power_iteration(w_mat, u, v, n_iterations: int = 1):
    """torch's power iteration: v = normalize(W^T u), u = normalize(W v), n times. No gradient."""
    w_mat = jax.lax.stop_gradient(w_mat)
    for _ in range(n_iterations):
        v = _normalize(w_mat.T @ u)
        u = _normalize(w_mat @ v)
    return u, v


def spectral_normalize(kernel, u, v, update: bool, n_iterations: int = 1):
    """(kernel / sigma, u, v): with `update`, u and v after the power iteration (training); without,
    the stored u and v, unchanged (eval). float32 throughout."""
    kernel = kernel.astype(jnp.float32)
    w_mat = torch_weight_matrix(kernel)
    if update:
        u, v = power_iteration(w_mat, u, v, n_iterations)
    sigma = jnp.dot(u, w_mat @ v)
    return kernel / sigma, u, v


class SpectralConv(nn.Module):
    """Conv2d (zero padding) whose kernel is spectrally normalised when `spectral` (SPADE's and
    OASIS's layers; without it a plain conv with the same parameters). Parameters: kernel (HWIO),
    bias; with `spectral`, batch_stats u (out,) and v (in*kh*kw,), drawn at init as torch draws
    them (normal, then unit length). `update_stats` runs the power iteration (torch's training
    mode); at init it does not."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    use_bias: bool = True
    spectral: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, update_stats: bool = False):
        cin = x.shape[-1]
        kernel = self.param("kernel", xavier_init, (self.kernel, self.kernel, cin, self.features), jnp.float32)
        if self.spectral:
            u = self.variable("batch_stats", "u",
                              lambda: _normalize(jax.random.normal(self.make_rng("params"), (self.features,))))
            v = self.variable("batch_stats", "v", lambda: _normalize(
                jax.random.normal(self.make_rng("params"), (cin * self.kernel * self.kernel,))))
            update = update_stats and not self.is_initializing()
            kernel, new_u, new_v = spectral_normalize(kernel, u.value, v.value, update)
            if update:
                u.value, v.value = new_u, new_v
        p = self.padding
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), (self.stride, self.stride), ((p, p), (p, p)))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y
