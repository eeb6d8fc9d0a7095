"""Registers t2r's classes and functions with gin, and parses configs.

Registration wraps (never modifies) the library's objects, under their own names,
so Tensor2Robot gin files (``train_eval_model.max_train_steps = 10``,
``DefaultRecordInputGenerator.file_patterns = ...``) bind the t2r equivalents.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
from collections.abc import Sequence

import gin

logger = logging.getLogger(__name__)

# Modules whose public classes and functions become configurable. Research
# projects add theirs with `register_module`.
CONFIGURABLE_MODULES = (
    "t2r.train",
    "t2r.models",
    "t2r.preprocessors",
    "t2r.data",
    "t2r.layers",
)

_registered: set[str] = set()
_IMPORT_LINE = re.compile(r"^\s*import\s+([\w.]+)\s*$", re.MULTILINE)


def register_module(module_name: str) -> None:
    """Makes the public classes and functions of `module_name` gin-configurable:
    those in its ``__all__``, or else those it defines."""
    if module_name in _registered:
        return
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and getattr(obj, "__module__", None) == module_name
        ]
    for name in names:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        try:
            gin.external_configurable(obj, name=name, module=module_name)
        except (ValueError, TypeError) as e:  # registered already, or not wrappable (protobuf)
            logger.debug("gin: %s", e)
    _registered.add(module_name)


def register_all() -> None:
    for module_name in CONFIGURABLE_MODULES:
        try:
            register_module(module_name)
        except ImportError as e:  # an optional extra is missing
            logger.debug("gin: skipping %s: %s", module_name, e)
    gin.constant("TRAIN", "train")
    gin.constant("EVAL", "eval")
    gin.constant("PREDICT", "infer")


def parse(gin_configs: Sequence[str] = (), gin_bindings: Sequence[str] = ()) -> None:
    """Registers t2r (and the modules the configs import) with gin, then parses
    config files and bindings. Missing config files raise FileNotFoundError."""
    register_all()
    missing = [path for path in gin_configs if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(f"gin config file(s) not found: {', '.join(missing)}")
    # Tensor2Robot configs `import` the modules of their models; register those
    # modules so that their (undecorated) classes bind like T2R's did.
    for path in gin_configs:
        with open(path, encoding="utf-8") as f:
            for module_name in _IMPORT_LINE.findall(f.read()):
                register_module(module_name)
    gin.parse_config_files_and_bindings(list(gin_configs), list(gin_bindings))


def bound_value(binding: str, default: object = None) -> object:
    """The value a binding such as ``'train_eval_model.model_dir'`` has, or `default`."""
    try:
        return gin.query_parameter(binding)
    except ValueError:
        return default
