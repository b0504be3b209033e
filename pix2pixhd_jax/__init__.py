"""pix2pixHD in JAX/Flax.

The package's folders are its architecture: docs/architecture.md says what each one holds,
which may import which (and which heavy dependencies load only when used), and what flows
through them.
"""

__version__ = "0.1.0"
