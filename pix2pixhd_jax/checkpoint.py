"""Orbax checkpoints of the networks' variables, with the config beside them.

Layout of a workdir:
  config.json             the config the checkpoints were made with
  checkpoints/<step>/     Orbax checkpoints; item 'models' holds
                          {'generator': variables, 'discriminator': ..., 'encoder': ...}
Orbax writes each step to a temporary folder and renames it when complete, so a
crash never leaves a half-written checkpoint that looks finished.
"""

import json
import logging
import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from pix2pixhd_jax import atomic
from pix2pixhd_jax.errors import CheckpointError


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def write_config(workdir: str, config):
    return atomic.write_text(os.path.join(workdir, "config.json"), json.dumps(config_dict(config), indent=2))


def config_dict(config) -> dict:
    """A config (ConfigDict, or read_config's attribute dict) as plain JSON-able nested dicts."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config))


class _Attributes(dict):
    """Attribute access to a nested dict: the config where ml_collections is not installed."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    # Writes go to the dict too (inference_config sets data fields), so what is read, copied and
    # written back as JSON is one thing.
    __setattr__ = dict.__setitem__


def attributes(obj):
    """A nested dict (a config.json) with attribute access, as read_config gives it without ml_collections."""
    return _Attributes({k: attributes(v) for k, v in obj.items()}) if isinstance(obj, dict) else obj


def read_config(workdir: str):
    """The workdir's config: an ml_collections.ConfigDict, or a read-only attribute dict where
    ml_collections is not installed (inference and benchmarks need no more)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found; {workdir} is not a pix2pixhd-jax workdir.")
    with open(path) as f:
        raw = json.load(f)
    try:
        import ml_collections
    except ImportError:
        return attributes(raw)
    return ml_collections.ConfigDict(raw)


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


def restore_to_host(workdir: str, step: int, item: str):
    """One item of a checkpoint as numpy arrays, whatever sharding it was saved with: each process
    reads the whole item onto its first local device (a restore with the saved sharding would
    leave processes without a shard of arrays saved from one device)."""
    path = os.path.join(checkpoint_dir(workdir), str(step), item)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        tree = _item_metadata(ckptr, path)
        abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
        restored = ckptr.restore(path, abstract)
    return jax.tree_util.tree_map(np.asarray, restored)


def item_metadata(workdir: str, step: int, item: str):
    """The tree one item of a checkpoint was saved as, each array's shape and dtype in its place
    (no array is read): which layout a saved state has."""
    with ocp.StandardCheckpointer() as ckptr:
        return _item_metadata(ckptr, os.path.join(checkpoint_dir(workdir), str(step), item))


def _item_metadata(ckptr: ocp.StandardCheckpointer, path: str):
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # a manager's items have no item-level _CHECKPOINT_METADATA: Orbax warns
    try:
        return ckptr.metadata(path).item_metadata
    finally:
        absl.setLevel(level)


def load_models(workdir: str, step: Optional[int] = None) -> dict:
    """The variables saved at `step` (default: the latest) as numpy arrays."""
    step = latest_step(workdir, "models") if step is None else step
    if step is None:
        raise CheckpointError(f"{checkpoint_dir(workdir)}: no checkpoint found.")
    return dict(restore_to_host(workdir, step, "models"))


# ----- training checkpoints: the whole train state -----------------------------------


def train_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """Periodic checkpoints, `keep` newest kept. Writes are asynchronous (on accelerators the
    step goes on while the host writes); Orbax renames a step's folder only when complete."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def _has_item(workdir: str, step: int, item: str) -> bool:
    return os.path.isdir(os.path.join(checkpoint_dir(workdir), str(step), item))


def latest_step(workdir: str, item: str) -> Optional[int]:
    """The newest finished step holding `item` ('state' from training, 'models' from import)."""
    root = checkpoint_dir(workdir)
    if not os.path.isdir(root):
        return None
    steps = sorted((int(d) for d in os.listdir(root) if d.isdigit() and _has_item(workdir, int(d), item)),
                   reverse=True)
    return steps[0] if steps else None


def save_state(mngr: ocp.CheckpointManager, step: int, state, item: str = "state"):
    mngr.save(step, args=ocp.args.Composite(**{item: ocp.args.StandardSave(state)}), force=True)


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state, item: str = "state"):
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract_state)}))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{os.path.join(str(mngr.directory), str(step))}: the checkpoint does not fit this config ({e}). Train "
            "with the config saved beside it (config.json), or start in a new --workdir."
        ) from None
    return restored[item]


def network_variables(g_params, g_stats, d_params=None, d_stats=None) -> dict:
    """{'generator', 'encoder', 'discriminator'}: {'params', 'batch_stats'} from a train state's parts."""
    out = {"generator": {"params": g_params["generator"], "batch_stats": g_stats["generator"]}}
    if "encoder" in g_params:
        out["encoder"] = {"params": g_params["encoder"], "batch_stats": g_stats["encoder"]}
    if d_params is not None:
        out["discriminator"] = {"params": d_params, "batch_stats": d_stats}
    return out


def load_network_params(workdir: str) -> dict:
    """{'generator', 'discriminator', 'encoder'} params and batch stats from the newest training
    state or imported models of a workdir (for init_from and synthesis)."""
    step = latest_step(workdir, "state")
    if step is not None:
        state = restore_to_host(workdir, step, "state")
        out = network_variables(state["g_params"], state["g_stats"], state["d_params"], state["d_stats"])
        return jax.tree_util.tree_map(np.asarray, out)
    step = latest_step(workdir, "models")
    if step is not None:
        return load_models(workdir, step)
    raise CheckpointError(f"{checkpoint_dir(workdir)}: no checkpoint found (neither a training state nor imported "
                          "models); train there first or import one with `pix2pixhd-jax import-torch`.")
