"""Orbax checkpoints of the networks' variables, with the config beside them.

Layout of a workdir:
  config.json             the config the checkpoints were made with
  checkpoints/<step>/     Orbax checkpoints; item 'state' holds a training state, item 'models'
                          {'generator': variables, 'discriminator': ..., 'encoder': ...}
Orbax writes each step to a temporary folder and renames it when complete, so a crash never
leaves a half-written checkpoint that looks finished; a disk that fails later, a copy cut
short or a file edited by hand still can. Every read goes through `restore` here, which checks
a step before it uses it (the JSON files Orbax reads parse; every byte range its OCDBT index
points to lies inside its file; the saved shapes are the ones asked for) and turns whatever
Orbax or TensorStore raise while reading into an `UnreadableCheckpointError` naming the file
and the fix. Inference reads only the parts it uses (G's and E's variables), so damage in D's
or the optimizer's arrays does not stop it.
"""

import inspect
import json
import logging
import os
import sys
from typing import Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from pix2pixhd_jax import atomic
from pix2pixhd_jax.config_loading import Config, with_defaults
from pix2pixhd_jax.errors import CheckpointError, UnreadableCheckpointError

# The JSON files Orbax reads to restore a step: in the step's folder, and in an item's.
_STEP_JSON = ("_CHECKPOINT_METADATA",)
_ITEM_JSON = ("_METADATA", "_sharding")
# The parts of each item that inference uses (G, its moving average where the state keeps one,
# and E where the model has one).
GENERATOR_PARTS = {"state": ("g_params", "g_stats", "ema_params", "ema_stats"), "models": ("generator", "encoder")}
UNREADABLE_SUFFIX = ".unreadable"


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def step_dir(workdir: str, step: int) -> str:
    return os.path.join(checkpoint_dir(workdir), str(step))


def write_config(workdir: str, config):
    return atomic.write_text(os.path.join(workdir, "config.json"), json.dumps(config_dict(config), indent=2))


def config_dict(config) -> dict:
    """A config as plain JSON-able nested dicts."""
    return json.loads(json.dumps(config))


def _json_problem(path: str) -> Optional[str]:
    """Why a JSON file cannot be read ('' when it parses), naming its size where it is cut short."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    try:
        json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return f"is not valid JSON, cut short or overwritten ({e}; the file has {len(raw)} bytes)"
    return ""


MODEL_GROUPS = ("data", "model", "train")  # what a model's config.json holds (a segmenter's has more)


def config_problem(workdir: str, groups=("data",)) -> str:
    """Why the workdir's config.json cannot be used ('' when it can): unreadable, or without `groups`."""
    path = os.path.join(os.path.abspath(workdir), "config.json")
    if not os.path.isfile(path):
        return f"{path}: not found"
    problem = _json_problem(path)
    if problem:
        return f"{path} {problem}"
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), dict) for k in groups):
        return f"{path}: not a pix2pixhd-jax model's config (it has no {', '.join(groups)} groups)"
    return ""


def read_config(workdir: str, groups=("data",)) -> Config:
    """The workdir's config, with the settings it lacks at their defaults (config_loading.with_defaults).
    groups: the groups it must hold (MODEL_GROUPS for a model's)."""
    path = os.path.join(os.path.abspath(workdir), "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not found; {workdir} is not a pix2pixhd-jax workdir.")
    problem = config_problem(workdir, groups)
    if problem:
        raise CheckpointError(f"{problem}. It records the model the checkpoints beside it were trained as: copy it "
                              "back from a backup, or resume training there with the --config the model was trained "
                              "with (`pix2pixhd-jax train` writes it anew when it resumes).")
    with open(path) as f:
        return with_defaults(json.load(f))


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
    return step_dir(workdir, step)


# ----- checking a step before it is used -------------------------------------------------


def _has_item(workdir: str, step: int, item: str) -> bool:
    return os.path.isdir(os.path.join(step_dir(workdir, step), item))


def steps(workdir: str, item: str) -> list:
    """The finished steps holding `item` ('state' from training, 'models' from import), newest first."""
    root = checkpoint_dir(workdir)
    if not os.path.isdir(root):
        return []
    return sorted((int(d) for d in os.listdir(root) if d.isdigit() and _has_item(workdir, int(d), item)),
                  reverse=True)


def latest_step(workdir: str, item: str) -> Optional[int]:
    """The newest finished step holding `item`."""
    found = steps(workdir, item)
    return found[0] if found else None


def _parse_location(location: str, base_dir: str):
    """OCDBT's 'kind:base:file:offset:length' -> (absolute file, offset, length)."""
    head, offset, length = location.rsplit(":", 2)
    _, base, rel = head.split(":", 2)
    return os.path.join(base_dir, base, rel), int(offset), int(length)


def key_part(key) -> str:
    """The top-level name an OCDBT key belongs to: b'g_params.generator.conv_in.conv.bias/0' -> 'g_params'."""
    key = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return key.split("/", 1)[0].split(".", 1)[0]


def stored_values(item_dir: str) -> list:
    """Every value of an item's OCDBT database stored outside its index: (array key, file, offset,
    length), the index's own nodes included (key ''). [] for an item without an OCDBT index."""
    if not os.path.isfile(os.path.join(item_dir, "manifest.ocdbt")):
        return []
    kv = ts.KvStore.open({"driver": "file", "path": item_dir.rstrip("/") + "/"}).result()
    manifest = ts.ocdbt.dump(kv).result()
    versions = manifest.get("versions") or []
    if not versions or "root" not in versions[-1] or "location" not in versions[-1]["root"]:
        return []
    out, pending = [], [versions[-1]["root"]["location"]]
    while pending:
        location = pending.pop()
        out.append(("",) + _parse_location(location, item_dir))
        for entry in ts.ocdbt.dump(kv, location).result().get("entries", []):
            if "location" in entry:  # a child node of an interior node
                pending.append(entry["location"])
            elif "indirect_value" in entry:
                out.append((entry["key"],) + _parse_location(entry["indirect_value"], item_dir))
    return out


def _first_line(error: BaseException) -> str:
    """The first line of what went wrong at the bottom of `error`'s chain: Orbax wraps TensorStore's
    error (which names the array and why, e.g. a failed decompression) in one that prints a
    multi-line spec of the store instead."""
    root, seen = error, {id(error)}
    while True:  # down the chain as Python's traceback prints it, each exception once
        below = root.__cause__ if root.__cause__ is not None else (
            None if root.__suppress_context__ else root.__context__)
        if below is None or id(below) in seen:
            break
        root = below
        seen.add(id(root))
    for candidate in (root, error):
        text = str(candidate).strip().splitlines()
        if text:
            return text[0][:300]
    return type(error).__name__


def check_step(workdir: str, step: int, item: str, parts: Optional[Sequence[str]] = None):
    """Raise UnreadableCheckpointError when `step`'s `item` cannot be read whole (only its top-level
    `parts` where given): a JSON file Orbax reads that does not parse, an index that cannot be
    read, or an array whose bytes lie past the end of its file (a copy or a disk cut short)."""
    where = step_dir(workdir, step)
    item_dir = os.path.join(where, item)
    required = os.path.join(item_dir, "_METADATA")  # the tree of arrays: nothing restores without it
    if not os.path.isfile(required):
        raise UnreadableCheckpointError(f"{required}: missing; step {step} was not written whole.", step=step,
                                        path=required)
    for path in [os.path.join(where, name) for name in _STEP_JSON] + [os.path.join(item_dir, n) for n in _ITEM_JSON]:
        problem = _json_problem(path) if os.path.isfile(path) else ""
        if problem:
            raise UnreadableCheckpointError(f"{path} {problem}", step=step, path=path)
    try:
        values = stored_values(item_dir)
    except (ValueError, OSError) as e:
        raise UnreadableCheckpointError(f"{item_dir}: its index (OCDBT) cannot be read ({_first_line(e)})",
                                        step=step, path=item_dir) from None
    sizes, short = {}, {}
    for key, path, offset, length in values:
        if parts is not None and key and key_part(key) not in parts:
            continue
        if path not in sizes:
            sizes[path] = os.path.getsize(path) if os.path.isfile(path) else -1
        if offset + length > sizes[path]:
            short.setdefault(path, []).append((offset + length, key))
    if short:
        path, hits = next(iter(short.items()))
        needed = max(end for end, _ in hits)
        names = sorted({k.decode("utf-8", "replace").split("/")[0] if isinstance(k, bytes) else "the index"
                        for _, k in hits})
        state = "missing" if sizes[path] < 0 else f"cut short: {sizes[path]} bytes, {needed} needed"
        arrays = f"{len(names)} arrays ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        raise UnreadableCheckpointError(f"{path}: {state}; {arrays} of step {step} cannot be read", step=step,
                                        path=path)


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _shapes(tree) -> dict:
    """{'a/b/c': shape} of a tree's leaves (dicts, dataclasses and named tuples alike)."""
    return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _saved_tree(item_dir: str):
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # a manager's items have no item-level _CHECKPOINT_METADATA: Orbax warns
    try:
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.metadata(item_dir).item_metadata
    finally:
        absl.setLevel(level)


def item_metadata(workdir: str, step: int, item: str):
    """The tree one item of a checkpoint was saved as, each array's shape and dtype in its place
    (no array is read): which layout a saved state has."""
    return _saved_tree(os.path.join(step_dir(workdir, step), item))


def _network_arrays_first(key: str):
    """G's, then D's arrays before the optimizers': their paths say what differs in a config's words."""
    ranks = [i for i, p in enumerate(("g_params", "generator", "d_params", "discriminator")) if key.startswith(p)]
    return (ranks[0] if ranks else 4, key)


def check_fit(saved, wanted, where: str, fix: str):
    """A CheckpointError naming the first difference when the saved tree's shapes are not the wanted ones."""
    saved, wanted = _shapes(saved), _shapes(wanted)
    order = _network_arrays_first
    differ = sorted((k for k in set(saved) & set(wanted) if saved[k] != wanted[k]), key=order)
    missing = sorted(set(wanted) - set(saved), key=order)
    extra = sorted(set(saved) - set(wanted), key=order)
    if not (missing or extra or differ):
        return
    if differ:
        k = differ[0]
        first = f"{k} is {saved[k]} there, {wanted[k]} here"
    elif missing:
        first = f"{missing[0]} is not in it"
    else:
        first = f"{extra[0]} is in it but not in this model"
    count = len(missing) + len(extra) + len(differ)
    raise CheckpointError(f"{where}: the checkpoint does not fit this config ({first}; {count} "
                          f"difference{'s' if count > 1 else ''}). {fix}")


def restore(workdir: str, step: int, item: str, abstract=None, parts: Optional[Sequence[str]] = None):
    """`step`'s `item`, checked first (check_step). abstract: the tree to restore into
    (ShapeDtypeStructs with their shardings; its shapes must be the saved ones, else a
    CheckpointError that the checkpoint does not fit); None: every array (of `parts`) as numpy
    on this process's first device, whatever sharding it was saved with. parts: the top-level
    entries to read; the others are not read at all (Orbax's partial restore)."""
    where = step_dir(workdir, step)
    item_dir = os.path.join(where, item)
    check_step(workdir, step, item, parts)
    try:
        saved = _saved_tree(item_dir)
    except Exception as e:  # noqa: BLE001 - anything Orbax raises here means the step cannot be read
        raise UnreadableCheckpointError(f"{item_dir}: Orbax cannot read its metadata ({_first_line(e)})",
                                        step=step, path=item_dir) from None
    saved = dict(getattr(saved, "tree", saved))
    if parts is not None:
        if not any(p in saved for p in parts):
            raise CheckpointError(f"{item_dir}: holds none of {', '.join(parts)} (it holds {', '.join(sorted(saved))}); "
                                  "it is not a checkpoint of this kind of model. Point --workdir at a pix2pixhd-jax "
                                  "training run or import.")
        saved = {k: v for k, v in saved.items() if k in parts}
    if abstract is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
    else:
        wanted = abstract if parts is None else {k: v for k, v in dict(abstract).items() if k in parts}
        check_fit(saved, wanted, where, "Train with the config saved beside it (config.json), or start in a new "
                  "--workdir.")
    _drop_abandoned_reads()
    try:
        if parts is None:
            with ocp.StandardCheckpointer() as ckptr:
                return ckptr.restore(item_dir, abstract)
        with ocp.PyTreeCheckpointer() as ckptr:
            restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
            return ckptr.restore(item_dir, args=ocp.args.PyTreeRestore(item=abstract, restore_args=restore_args,
                                                                      partial_restore=True))
    except Exception as e:  # noqa: BLE001 - TensorStore and Orbax raise many types for one unreadable file
        raise UnreadableCheckpointError(f"{item_dir}: Orbax cannot read step {step} ({_first_line(e)})", step=step,
                                        path=item_dir) from None


def _is_abandoned_read(unraisable) -> bool:
    """An abandoned read's coroutine closed by the collector, or TensorStore's read finishing
    after the loop closed (its callback, called from C, fails to wake the loop)."""
    obj = unraisable.object
    if inspect.iscoroutine(obj):
        return f"{os.sep}orbax{os.sep}" in obj.cr_code.co_filename
    tb = unraisable.exc_traceback
    return (obj is None and unraisable.exc_type is RuntimeError and tb is not None
            and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"
            and str(unraisable.exc_value) == "Event loop is closed")


def _drop_abandoned_reads():
    """Orbax reads a step's arrays as coroutines on an event loop that it closes as soon as one
    read fails; the reads still under way are abandoned. Whenever the garbage collector closes
    one (while Orbax still unwinds, or later during training), Orbax's handler turns the close
    into an exception, which Python prints as 'Exception ignored in: <coroutine ...>' with a
    traceback and a multi-line store spec, once per abandoned array; and each TensorStore read
    that finishes after the loop closed prints 'Event loop is closed'. The failure is reported
    once, by UnreadableCheckpointError: from the first restore on, this process drops those
    prints, and only those (set before reading, since the collector may run before Orbax returns)."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return

    def hook(unraisable):
        if not _is_abandoned_read(unraisable):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook


def restore_to_host(workdir: str, step: int, item: str, parts: Optional[Sequence[str]] = None):
    """One item of a checkpoint (only its top-level `parts` where given) as numpy arrays, whatever
    sharding it was saved with: each process reads it onto its first local device (a restore with
    the saved sharding would leave processes without a shard of arrays saved from one device).
    A step that cannot be read is an error that names the file and the older step that reads."""
    try:
        tree = restore(workdir, step, item, parts=parts)
    except UnreadableCheckpointError as e:
        raise UnreadableCheckpointError(unreadable_message(workdir, e, item, parts), step=e.step,
                                        path=e.path) from None
    return jax.tree_util.tree_map(np.asarray, tree)


def unreadable_message(workdir: str, error: UnreadableCheckpointError, item: str, parts=None) -> str:
    """The error's text and the fix: the newest older step that reads, moved to by setting the damaged one aside."""
    older = [s for s in steps(workdir, item) if s < error.step]
    readable = None
    for s in older:
        try:
            check_step(workdir, s, item, parts)
        except UnreadableCheckpointError:
            continue
        readable = s
        break
    damaged = step_dir(workdir, error.step)
    if readable is None:
        fix = (f"No older step of {checkpoint_dir(workdir)} reads either: copy the workdir back from a backup, or "
               "train again.")
    else:
        fix = (f"Step {readable} is whole: move {damaged} aside (e.g. to {damaged}{UNREADABLE_SUFFIX}) to use it, or "
               "copy the workdir back from a backup.")
    return f"{error} (step {error.step}'s checkpoint is damaged). {fix}"


def load_models(workdir: str, step: Optional[int] = None, parts: Optional[Sequence[str]] = None) -> dict:
    """The variables saved at `step` (default: the latest) as numpy arrays."""
    step = latest_step(workdir, "models") if step is None else step
    if step is None:
        raise CheckpointError(f"{checkpoint_dir(workdir)}: no checkpoint found.")
    return dict(restore_to_host(workdir, step, "models", parts))


# ----- training checkpoints: the whole train state -----------------------------------


def train_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
    """Periodic checkpoints, `keep` newest kept. Writes are asynchronous (on accelerators the
    step goes on while the host writes); Orbax renames a step's folder only when complete."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save_state(mngr: ocp.CheckpointManager, step: int, state, item: str = "state"):
    mngr.save(step, args=ocp.args.Composite(**{item: ocp.args.StandardSave(state)}), force=True)


def set_aside(workdir: str, step: int) -> str:
    """Rename an unreadable step's folder out of the way (nothing is deleted; a run may write that
    step again); returns its new path."""
    source = step_dir(workdir, step)
    target, n = source + UNREADABLE_SUFFIX, 1
    while os.path.exists(target):
        n += 1
        target = f"{source}{UNREADABLE_SUFFIX}.{n}"
    os.rename(source, target)
    return target


def network_variables(g_params, g_stats, d_params=None, d_stats=None) -> dict:
    """{'generator', 'encoder', 'discriminator'}: {'params', 'batch_stats'} from a train state's parts."""
    out = {"generator": {"params": g_params["generator"], "batch_stats": g_stats["generator"]}}
    if "encoder" in g_params:
        out["encoder"] = {"params": g_params["encoder"], "batch_stats": g_stats["encoder"]}
    if d_params is not None:
        out["discriminator"] = {"params": d_params, "batch_stats": d_stats}
    return out


def inference_generator(state):
    """(params, stats) of the generator that synthesizes: the moving average of G where the train
    state keeps one (OASIS's ema_params: OASIS synthesizes and evaluates with it), else G's own.
    `state` is a train state or a restored state's dict."""
    get = state.get if isinstance(state, dict) else lambda name: getattr(state, name, None)
    if get("ema_params"):
        return get("ema_params"), get("ema_stats")
    return get("g_params"), get("g_stats")


def load_network_params(workdir: str, discriminator: bool = True) -> dict:
    """{'generator', 'encoder', 'discriminator'} params and batch stats from the newest training
    state or imported models of a workdir (for init_from and synthesis). discriminator=False is
    inference's read: the generator that synthesizes (inference_generator: the moving average of
    G where the state keeps one) and E, and only their arrays are read (D's and the optimizer's
    never are, so damage there does not matter). A damaged step is an error naming the file and
    the older step that reads."""
    for item in ("state", "models"):
        step = latest_step(workdir, item)
        if step is None:
            continue
        parts = None if discriminator else GENERATOR_PARTS[item]
        if item == "state" and parts is None:
            parts = ("g_params", "g_stats", "d_params", "d_stats")
        tree = restore_to_host(workdir, step, item, parts)
        if item == "state" and not discriminator:
            return network_variables(*inference_generator(tree))
        if item == "state":
            return network_variables(tree["g_params"], tree["g_stats"], tree.get("d_params"), tree.get("d_stats"))
        if "generator" not in tree:
            raise CheckpointError(f"{step_dir(workdir, step)}: the imported models hold no generator "
                                  f"({', '.join(sorted(tree))}); import one with `pix2pixhd-jax import-torch --netG`.")
        return dict(tree)
    raise CheckpointError(f"{checkpoint_dir(workdir)}: no checkpoint found (neither a training state nor imported "
                          "models); train there first or import one with `pix2pixhd-jax import-torch`.")
