"""Loading `configs/*.py` files and applying `--config.key=value` overrides.

A config file defines `get_config()` (optionally `get_config(arg)`, selected
with `path.py:arg`) returning an ml_collections.ConfigDict, as in the Flax
examples. Config files may import their siblings (`from configs import default`):
the folder holding the config folder is put on sys.path while loading, and the
project's own configs package after it, so a config copied anywhere (`cp
configs/synthetic_demo.py ~/my_config.py`) still finds `configs.default`. A config
file that fails to load is a ConfigError naming its line, never a traceback.
"""

import ast
import importlib.util
import inspect
import os
import sys
import traceback

from pix2pixhd_jax.errors import ConfigError

# The folder holding the project's `configs` package (a clone, or an editable install).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


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
    return config


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
