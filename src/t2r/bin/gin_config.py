"""Registers t2r's classes and functions with gin, and parses configs.

Registration wraps (never modifies) the library's objects, under their own names,
so Tensor2Robot gin files (``train_eval_model.max_train_steps = 10``,
``DefaultRecordInputGenerator.file_patterns = ...``) bind the t2r equivalents.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import logging
import os
import re
import sys
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
    "t2r.data.lerobot",  # needs the lerobot extra (pyarrow, av); skipped without it
    "t2r.layers",
    "t2r.export",
    "t2r.predictors",
    "t2r.policies",
    "t2r.collect",
)

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_search_path() -> list[str]:
    """Where bare config names are looked up: each research project's ``configs/``
    (``t2r/research/<project>/configs/``, sorted), then ``t2r/configs/`` if it exists.

    A project's configs live next to its code; a new project is found without
    being listed here.
    """
    research = os.path.join(_PACKAGE_DIR, "research")
    dirs = sorted(
        os.path.join(research, name, "configs")
        for name in (os.listdir(research) if os.path.isdir(research) else [])
        if os.path.isdir(os.path.join(research, name, "configs"))
    )
    shared = os.path.join(_PACKAGE_DIR, "configs")
    return dirs + ([shared] if os.path.isdir(shared) else [])


def shipped_configs() -> dict[str, str]:
    """Every shipped config: ``{bare name: path}`` (the first on `config_search_path` wins)."""
    found: dict[str, str] = {}
    for directory in config_search_path():
        for name in sorted(os.listdir(directory)):
            if name.endswith(".gin"):
                found.setdefault(name, os.path.join(directory, name))
    return found


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
        try:
            obj = getattr(module, name)
        except ImportError as e:  # a lazily imported name whose optional extra is missing
            logger.debug("gin: skipping %s.%s: %s", module_name, name, e)
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if inspect.isclass(obj) and issubclass(obj, enum.Enum):
            continue  # gin cannot subclass enums (bind their members as constants instead)
        try:
            gin.external_configurable(obj, name=name, module=module_name)
        except (ValueError, TypeError, AttributeError) as e:  # registered, or not wrappable
            logger.debug("gin: %s", e)
    _registered.add(module_name)


def register_all() -> None:
    for module_name in CONFIGURABLE_MODULES:
        try:
            register_module(module_name)
        except ImportError as e:  # an optional extra is missing
            logger.debug("gin: skipping %s: %s", module_name, e)
    # Idempotent: a second parse in one process (or after gin.clear_config) keeps them.
    for name, value in (("TRAIN", "train"), ("EVAL", "eval"), ("PREDICT", "infer")):
        try:
            gin.constant(name, value)
        except ValueError:  # defined already
            pass


def resolve_config_path(path: str) -> str:
    """`path` if it is a file, else the shipped config of that name (`shipped_configs`:
    ``t2r/research/<project>/configs/``) when there is one (so
    ``--gin_configs=pose_env_run_train_reg.gin`` works from anywhere), else `path`
    unchanged."""
    if os.path.isfile(path) or os.sep in path or "/" in path:
        return path
    return shipped_configs().get(path, path)


def parse(gin_configs: Sequence[str] = (), gin_bindings: Sequence[str] = ()) -> None:
    """Registers t2r (and the modules the configs import) with gin, then parses
    config files and bindings. A bare file name that is not in the working
    directory is looked up among the shipped configs (`resolve_config_path`).
    Missing config files raise FileNotFoundError."""
    register_all()
    gin_configs = [resolve_config_path(path) for path in gin_configs]
    missing = [path for path in gin_configs if not os.path.isfile(path)]
    if missing:
        shipped = ", ".join(sorted(shipped_configs())) or "none"
        raise FileNotFoundError(
            f"gin config file(s) not found: {', '.join(missing)} (shipped configs: {shipped})"
        )
    # Tensor2Robot configs `import` the modules of their models; register those
    # modules so that their (undecorated) classes bind like T2R's did.
    for path in gin_configs:
        with open(path, encoding="utf-8") as f:
            for module_name in _IMPORT_LINE.findall(f.read()):
                _register_config_module(module_name, path)
    gin.parse_config_files_and_bindings(list(gin_configs), list(gin_bindings))


def _register_config_module(module_name: str, config_path: str) -> None:
    """`register_module` for a module a gin file imports, found as
    ``python -m t2r.bin.run_t2r_trainer`` finds it: the working directory comes
    first on the import path (the ``t2r`` console script does not put it there
    by itself). A failure names the gin file and the module."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        register_module(module_name)
    except ImportError as e:
        raise ImportError(
            f"{config_path}: 'import {module_name}' failed: {type(e).__name__}: {e}. "
            f"Modules are looked up in the working directory ({cwd}) and on sys.path; "
            "run from the directory that holds the module's package or add it to PYTHONPATH.",
            name=module_name,
        ) from e


def bound_value(binding: str, default: object = None) -> object:
    """The value a binding such as ``'train_eval_model.model_dir'`` has, or `default`.

    A macro (``train_eval_model.model_dir = %MODEL_DIR``) is resolved to its value.
    """
    try:
        value = gin.query_parameter(binding)
        while (
            isinstance(value, gin.config.ConfigurableReference)
            and value.configurable.name == "macro"
        ):
            value = gin.query_parameter(f"{value.scoped_selector}.value")
        return value
    except ValueError:
        return default
