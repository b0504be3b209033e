"""Configs: `configs/*.py` files with `--config.key=value` overrides, and saved configs with
every setting they lack filled in. Both give one shape, `Config`.

A config file defines `get_config()` (optionally `get_config(arg)`, selected
with `path.py:arg`) returning an ml_collections.ConfigDict, as in the Flax
examples. Config files may import their siblings (`from configs import default`):
the folder holding the config folder is put on sys.path while loading, and the
project's own configs package after it, so a config copied anywhere (`cp
configs/synthetic_demo.py ~/my_config.py`) still finds `configs.default`. A config
file that fails to load is a ConfigError naming its line, never a traceback.

What the program reads is a `Config`: nested dicts with attribute access, made from the
file's ConfigDict once its overrides are applied, or from a workdir's config.json
(`checkpoint.read_config`) by `with_defaults`, which adds every setting the saved config
lacks (a workdir from before the setting existed) at its value in configs/default.py. So
no reader needs a fallback, and nothing past loading needs ml_collections (the accelerator
images have none).
"""

import ast
import contextlib
import copy
import functools
import importlib.util
import inspect
import logging
import os
import sys
import traceback
import types

from pix2pixhd_jax.errors import ConfigError

# The folder holding the project's `configs` package (a clone, or an editable install).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
DEFAULT_CONFIG = os.path.join(PROJECT_ROOT, "configs", "default.py")


class Config(dict):
    """A loaded config: nested dicts read and written by attribute (`config.data.label_nc`) or
    key; a missing setting is an AttributeError. It is its own JSON form (json.dumps takes it)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    __setattr__ = dict.__setitem__

    def __deepcopy__(self, memo):
        return Config({k: copy.deepcopy(v, memo) for k, v in self.items()})


def as_config(value):
    """A ConfigDict or nested dicts as a Config (groups become Configs, lists stay lists)."""
    if _is_group(value):
        return Config({k: as_config(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(as_config(v) for v in value)
    return value


def _failure(path: str, error: BaseException) -> ConfigError:
    """A ConfigError naming the config file's line where loading it failed."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == path]
    where = f"{path}:{frames[-1].lineno}" if frames else path
    if isinstance(error, SyntaxError) and error.lineno:
        where = f"{path}:{error.lineno}"
    if isinstance(error, ModuleNotFoundError) and error.name and error.name.split(".")[0] == "configs":
        return ConfigError(f"{where}: imports the project's configs package ({error}), which is not next to "
                           f"this installation of pix2pixhd_jax ({PROJECT_ROOT}); use a clone of the project, or "
                           "copy the configs it imports next to the file in a folder named configs/.")
    return ConfigError(f"{where}: the config file fails to load ({type(error).__name__}: {error}); fix it, or "
                       "start from one of the project's configs/*.py.")


def load_config(spec: str, overrides=()):
    """Load 'path/to/config.py[:arg]' and apply overrides like 'data.label_nc=0'."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found (give a path such as configs/default.py).")
    path = os.path.abspath(path)
    parent = os.path.dirname(os.path.dirname(path))
    added = [p for p in (parent, PROJECT_ROOT) if p not in sys.path]
    for p in added:
        sys.path.insert(0 if p == parent else len(sys.path), p)
    try:
        module_name = "_pix2pixhd_config_" + os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file: any failure is theirs to fix
            raise _failure(path, e) from None
        if not hasattr(module, "get_config"):
            raise ConfigError(f"{path}: defines no get_config().")
        if arg and not inspect.signature(module.get_config).parameters:
            raise ConfigError(f"{spec}: {os.path.basename(path)} has no variants; drop ':{arg}'.")
        try:
            config = module.get_config(arg) if arg else module.get_config()
        except ConfigError:
            raise
        except ValueError as e:  # the configs' way to refuse an unknown variant
            raise ConfigError(str(e)) from None
        except Exception as e:  # noqa: BLE001
            raise _failure(path, e) from None
    finally:
        for p in added:
            sys.path.remove(p)
    for item in overrides:
        apply_override(config, item)
    return as_config(config)


@contextlib.contextmanager
def _without_ml_collections():
    """configs/default.py read where ml_collections is not installed: its ConfigDicts are Configs."""
    stand_in = types.ModuleType("ml_collections")
    stand_in.ConfigDict = Config
    previous = sys.modules.get("ml_collections", stand_in)
    sys.modules["ml_collections"] = stand_in
    try:
        yield
    finally:
        if previous is stand_in:
            del sys.modules["ml_collections"]
        else:
            sys.modules["ml_collections"] = previous


@functools.lru_cache(maxsize=1)
def _defaults():
    if not os.path.isfile(DEFAULT_CONFIG):
        # An installed package without the project's configs/: saved configs are read as they are.
        logging.debug("%s not found: saved configs get no defaults", DEFAULT_CONFIG)
        return Config()
    try:
        import ml_collections  # noqa: F401
    except ImportError:
        with _without_ml_collections():
            return load_config(DEFAULT_CONFIG)
    return load_config(DEFAULT_CONFIG)


def with_defaults(saved) -> Config:
    """A saved config (nested dicts, e.g. a workdir's config.json) as a Config, with every setting
    it lacks in the groups it has at its configs/default.py value: the one place where a
    workdir from before a setting existed gets it. A group it lacks stays missing: the groups
    say what kind of workdir it is (load_segmenter asks for a 'segmenter' group)."""
    def fill(into, defaults):
        for key, value in defaults.items():
            if key not in into and not _is_group(value):
                into[key] = copy.deepcopy(value)
            elif key in into and _is_group(value) and _is_group(into[key]):
                fill(into[key], value)
        return into

    return fill(as_config(saved), _defaults())


def _parse_value(text: str, current, key: str):
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}={text}: expected true or false.")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--config.{key}={text}: expected an integer.") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--config.{key}={text}: expected a number.") from None
    if isinstance(current, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config, item: str):
    """Apply one 'a.b.c=value' override, keeping the field's type."""
    item = item.removeprefix("--config.")
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"--config.{item}: expected --config.key=value.")
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            raise ConfigError(f"--config.{key}: no field {part!r} (known: {', '.join(sorted(node.keys()))}).")
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        raise ConfigError(f"--config.{key}: no field {leaf!r} (known: {', '.join(sorted(node.keys()))}).")
    if _is_group(node[leaf]):
        fields = sorted(node[leaf].keys())
        raise ConfigError(f"--config.{key}={text}: {key} is a group of settings, not one; set its fields one by one, "
                          f"e.g. --config.{key}.{fields[0]}=... (its fields: {', '.join(fields)}).")
    try:
        node[leaf] = _parse_value(text, node[leaf], key)
    except TypeError as e:
        raise ConfigError(f"--config.{key}={text}: {e}") from None


def _is_group(value):
    # Duck-typed so the CLI imports where ml_collections is absent (the accelerator image).
    return hasattr(value, "keys") and hasattr(value, "items") and not isinstance(value, (str, bytes))


def split_config_args(argv):
    """Separate '--config.key=value' items from the rest of a command line."""
    overrides, rest = [], []
    for i, item in enumerate(argv):
        if item.startswith("--config.") and "=" not in item:
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
            fix = f"write {item}={value}" if value is not None else f"write {item}=VALUE"
            raise ConfigError(f"{item}{' ' + value if value is not None else ''}: a config override takes its value "
                              f"after '=' ({fix}).")
        (overrides if item.startswith("--config.") else rest).append(item)
    return overrides, rest
