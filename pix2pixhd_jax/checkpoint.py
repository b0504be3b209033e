"""Orbax checkpoints of the networks' variables, with the config beside them.

Layout of a workdir:
  config.json             the config the checkpoints were made with
  checkpoints/<step>/     Orbax checkpoints; item 'models' holds
                          {'generator': variables, 'discriminator': ..., 'encoder': ...}
Orbax writes each step to a temporary folder and renames it when complete, so a
crash never leaves a half-written checkpoint that looks finished.
"""

import json
import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from pix2pixhd_jax.errors import UserError


class CheckpointError(UserError):
    pass


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def write_config(workdir: str, config):
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort")
                else json.dumps(config, indent=2))
    os.replace(tmp, path)
    return path


def read_config(workdir: str):
    """The workdir's config as an ml_collections.ConfigDict."""
    import ml_collections

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found; {workdir} is not a pix2pixhd-jax workdir.")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def manager(workdir: str, max_to_keep: Optional[int] = None) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save_models(workdir: str, step: int, models: dict, config=None):
    """Write {'generator': ..., 'discriminator': ..., 'encoder': ...} variables at `step`."""
    if config is not None:
        write_config(workdir, config)
    tree = jax.tree_util.tree_map(np.asarray, models)
    with manager(workdir) as mngr:
        mngr.save(step, args=ocp.args.Composite(models=ocp.args.StandardSave(tree)), force=True)
        mngr.wait_until_finished()
    return os.path.join(checkpoint_dir(workdir), str(step))


def load_models(workdir: str, step: Optional[int] = None) -> dict:
    """The variables saved at `step` (default: the latest) as numpy arrays."""
    with manager(workdir) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{checkpoint_dir(workdir)}: no checkpoint found.")
        restored = mngr.restore(step, args=ocp.args.Composite(models=ocp.args.StandardRestore()))
    return jax.tree_util.tree_map(np.asarray, dict(restored["models"]))
