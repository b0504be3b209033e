"""pix2pixHD in JAX/Flax.

The package's folders are its architecture (docs/architecture.md): `models/` (the networks
and the pix2pixHD model as a whole), `data/` (files to arrays), `weights/` (foreign weight
files), `inference/` (synthesis, styles, editing), `serve/` (the editor), `evaluation/`
(scores), `training/` (the step, the objective, the train command), `runtime/` (mesh,
multi-host, the loop skeleton) and a few shared modules: `cli`, `errors`, `config_loading`,
`checkpoint`, `atomic`. No module imports TensorFlow when it is imported; the input pipeline
imports it when a pipeline is built.
"""

__version__ = "0.1.0"
