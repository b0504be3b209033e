"""pix2pixHD in JAX/Flax.

Submodules are imported on demand: the core (models, losses, training) never
pulls in TensorFlow, which lives only in `pix2pixhd_jax.data.pipeline` and
`pix2pixhd_jax.data.tfds_builders`.
"""

__version__ = "0.1.0"
