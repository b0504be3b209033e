"""The first layout's module paths as aliases of the modules that now hold their code.

`import pix2pixhd_jax.synthesis` (or `from pix2pixhd_jax import synthesis`) gives a module
whose attributes are looked up in the new modules listed for it, in order, so code written
against the old paths keeps working; new code uses the new paths (docs/architecture.md lists
both). An alias module is made on first import; its targets are imported then.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

_P = "pix2pixhd_jax."

# old module -> the modules that hold its names now, searched in order.
ALIASES = {
    "inputs": ("models.pix2pixhd",),
    "train_step": ("training.step", "models.pix2pixhd"),
    "train": ("training.train", "errors"),
    "schedule": ("training.schedule",),
    "image_pool": ("training.image_pool",),
    "losses": ("training.losses",),
    "benchmark": ("training.benchmark",),
    "synthesis": ("inference.synthesis", "errors"),
    "synthesize_files": ("inference.files",),
    "features": ("inference.features", "errors"),
    "encode_features": ("inference.encode",),
    "editing": ("inference.editing", "errors"),
    "metrics": ("evaluation.metrics",),
    "segmentation": ("evaluation.segmenter",),
    "evaluate": ("evaluation.evaluate",),
    "interop": ("weights.reference", "errors"),
    "sharding": ("runtime.sharding",),
    "distributed": ("runtime.distributed", "errors"),
    "host_memory": ("runtime.host_memory",),
    "metric_writer": ("runtime.metric_writer",),
    "visualize": ("data.visualize", "models.pixels"),
    "data.errors": ("errors",),
    "models.vgg": ("models.vgg19", "weights.vgg19", "training.losses", "errors"),
    "models.unet": ("models.unet_generator", "weights.pix2pix"),
    "models.inception_weights": ("weights.inception", "errors"),
}


class _AliasModule(types.ModuleType):
    def __init__(self, name, targets):
        super().__init__(name, f"Alias of {', '.join(targets)} (the package's first layout).")
        self.__targets = [importlib.import_module(t) for t in targets]

    def __getattr__(self, attr):
        for module in self.__targets:
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (an alias of "
                             f"{', '.join(m.__name__ for m in self.__targets)}) has no attribute {attr!r}")

    def __dir__(self):
        return sorted(set().union(*(dir(m) for m in self.__targets)))


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return _AliasModule(spec.name, [_P + t for t in ALIASES[spec.name[len(_P):]]])

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_P) and fullname[len(_P):] in ALIASES:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install():
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
