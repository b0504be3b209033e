"""The import graph is the architecture (docs/architecture.md): read from the source with ast,
nothing run.

Each part of the package may import only the parts below it; the project's own imports sit
at the top of files (the documented exceptions are listed here); no module imports another's
private names; tests and experiments import no test file. The first layout's module paths
are gone, with no import hook standing in for them.
"""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pix2pixhd_jax"
BASICS = {"errors", "atomic", "config_loading", "checkpoint"}

# What each part may import besides itself (a part is a subpackage or a top-level module).
ALLOWED = {
    "errors": set(),
    "atomic": {"errors"},
    "config_loading": {"errors"},
    "checkpoint": {"config_loading", "atomic", "errors"},
    "__init__": set(),
    "models": {"errors"},
    "runtime": {"checkpoint", "atomic", "errors"},
    "weights": {"models", "atomic", "errors"},
    "data": {"models", "atomic", "errors"},
    "inference": {"models", "data", "weights", "runtime"} | BASICS,
    "serve": {"inference", "models", "data", "runtime"} | BASICS,
    "evaluation": {"inference", "models", "data", "weights", "runtime"} | BASICS,
    "training": {"evaluation", "inference", "models", "data", "weights", "runtime"} | BASICS,
    "cli": {"training", "evaluation", "inference", "serve", "models", "data", "weights", "runtime"} | BASICS,
}

# Own-module imports inside a function, each with its reason.
LAZY_EXCEPTIONS = {
    # The TFDS builders are TensorFlow and TFDS at import: loaded only where a TFDS dataset is asked for.
    ("pix2pixhd_jax/cli.py", "pix2pixhd_jax.data.tfds_builders"),
    ("pix2pixhd_jax/data/pipeline.py", "pix2pixhd_jax.data.tfds_builders"),
}


def part_of(module: str) -> str:
    """'pix2pixhd_jax.inference.synthesis' -> 'inference'; 'pix2pixhd_jax.errors' -> 'errors'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def own_imports(source: str, module: str, is_package: bool):
    """(imported module, imported names, inside a function?) for every import of pix2pixhd_jax."""
    tree = ast.parse(source)
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, [], in_function) for a in child.names if a.name.split(".")[0] == "pix2pixhd_jax")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[:len(anchor) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] == "pix2pixhd_jax":
                    for alias in child.names:
                        sub = f"{base}.{alias.name}"
                        is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                            (ROOT / Path(*sub.split(".")) / "__init__.py").is_file()
                        out.append((sub, [], in_function) if is_module else (base, [alias.name], in_function))
            visit(child, inside)

    visit(tree, False)
    return out


def violations(path: Path, source: str):
    module = module_name(path)
    rel = path.relative_to(ROOT).as_posix()
    part = "cli" if module == "pix2pixhd_jax.cli" else part_of(module)
    allowed = ALLOWED[part] | {part}
    found = []
    for target, names, in_function in own_imports(source, module, path.name == "__init__.py"):
        target_part = part_of(target)
        if target_part not in allowed:
            found.append(f"{rel}: imports {target} ({part} may import {sorted(allowed - {part})})")
        if in_function and (rel, target) not in LAZY_EXCEPTIONS:
            found.append(f"{rel}: imports {target} inside a function (imports sit at the top of the file)")
        found += [f"{rel}: imports the private name {n} of {target}" for n in names
                  if n.startswith("_") and target != module]
    return found


def package_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_is_placed():
    parts = {("cli" if module_name(p) == "pix2pixhd_jax.cli" else part_of(module_name(p))) for p in package_files()}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


def test_imports_point_down_and_sit_at_the_top():
    found = [v for path in package_files() for v in violations(path, path.read_text())]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path, source, expected", [
    ("models/generator.py", "from pix2pixhd_jax.training import losses\n", "models may import"),
    ("models/generator.py", "from pix2pixhd_jax.checkpoint import read_config\n", "models may import"),
    ("inference/synthesis.py", "from pix2pixhd_jax.training.step import make_train_step\n", "inference may import"),
    ("serve/service.py", "import pix2pixhd_jax.training.train\n", "serve may import"),
    ("inference/synthesis.py", "def f():\n    from pix2pixhd_jax.models import pix2pixhd\n", "inside a function"),
    ("evaluation/evaluate.py", "from pix2pixhd_jax.training.step import _private\n", "private name"),
    ("data/pipeline.py", "from pix2pixhd_jax.inference.synthesis import Synthesizer\n", "data may import"),
])
def test_the_check_finds_what_breaks_the_rules(path, source, expected):
    found = violations(PACKAGE / path, source)
    assert any(expected in v for v in found), found


def test_the_documented_exceptions_are_the_only_lazy_imports_and_still_exist():
    lazy = {(path.relative_to(ROOT).as_posix(), target) for path in package_files()
            for target, _, inside in own_imports(path.read_text(), module_name(path), path.name == "__init__.py")
            if inside}
    assert lazy == LAZY_EXCEPTIONS


def test_tests_and_experiments_import_no_test_file_and_no_private_name():
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("test_"):
                    found.append(f"{path.name}: imports the test file {node.module}")
                if node.module.split(".")[0] == "pix2pixhd_jax":
                    found += [f"{path.name}: imports {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_")]
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: imports the test file {a.name}" for a in node.names
                          if a.name.startswith("test_")]
    assert not found, "\n".join(found)


def test_the_first_layouts_module_paths_do_not_import():
    """Nothing is aliased: a module path of the first layout (docs/architecture.md's table) is
    not found, and importing the package leaves Python's import system as it was."""
    for old in ("pix2pixhd_jax.synthesis", "pix2pixhd_jax.train_step", "pix2pixhd_jax.models.vgg"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    script = ("import sys; before = list(sys.meta_path), list(sys.path_hooks); import pix2pixhd_jax; "
              "assert (list(sys.meta_path), list(sys.path_hooks)) == before")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True)
