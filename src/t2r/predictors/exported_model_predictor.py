"""ExportedModelPredictor: serves the newest complete export, without model code."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2r.export import layout
from t2r.export.errors import ExportError
from t2r.export.loading import LoadedExport, load_export
from t2r.predictors.abstract_predictor import AbstractPredictor, RestoreOptions, not_loaded_error
from t2r.predictors.inputs import FeatureFeeder, to_numpy, to_torch
from t2r.specs import TensorSpecStruct, flatten_spec_structure

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Loaded:
    export: LoadedExport
    feeder: FeatureFeeder
    runner: Any  # what `_run` calls: a program, or an onnxruntime session
    initial_state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class ExportedModelPredictor(AbstractPredictor):
    """Predicts with the newest complete version in an export directory.

    Tensor2Robot's ExportedSavedModelPredictor for t2r exports (see
    ``docs/export_format.md``). It imports no model code: the program and the
    specs come from the export. Only complete versions are loaded (an
    integer-named directory with ``t2r_assets.json``; temporary and
    half-copied directories are skipped), and `restore` switches to a newer
    version when one has appeared, or to a new write of the loaded version
    (versions are told apart by content identity, `layout.read_identity`,
    not by path). Loading never runs code from the export (see
    ``docs/export_format.md``).

    Args:
      export_dir: a directory of versions, or one version directory.
      timeout: seconds `restore` waits for a version before returning False
        (one attempt is always made, even with 0).
      restore_model_option: restore in the constructor (synchronously or in a
        background thread), or not (default).
      poll_interval_secs: how often `restore` looks again while waiting.
      device: where the program runs (``'cpu'``; torch.export programs can be
        moved to ``'cuda'``).
      allow_cast: accept inputs of another dtype of the same kind (float64
        for float32); see `FeatureFeeder`.
      num_threads: if given, ``torch.set_num_threads`` (process-wide).
      wait_for_export_dir: when `export_dir` does not exist, `restore` waits
        up to `timeout` for it (a collector started before its trainer's first
        export). By default a missing directory is an error at once (a typo
        should not cost the timeout).
      allow_nonfinite: accept NaN/infinite float inputs (refused by default;
        see `FeatureFeeder`).
      trust_torchscript: also load TorchScript programs, whose loader
        unpickles them: only for exports from a trusted source (see
        ``docs/export_format.md``). torch.export programs never need it.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        timeout: float = 600.0,
        restore_model_option: RestoreOptions = RestoreOptions.DO_NOT_RESTORE,
        poll_interval_secs: float = 1.0,
        device: str | torch.device = "cpu",
        allow_cast: bool = True,
        num_threads: int | None = None,
        wait_for_export_dir: bool = False,
        allow_nonfinite: bool = False,
        trust_torchscript: bool = False,
    ) -> None:
        self._export_dir = Path(export_dir)
        self._wait_for_export_dir = wait_for_export_dir
        self._allow_nonfinite = allow_nonfinite
        self._timeout = float(timeout)
        self._poll_interval_secs = float(poll_interval_secs)
        self._device = torch.device(device)
        self._allow_cast = allow_cast
        self._loaded: _Loaded | None = None
        self._bad_versions: set[str] = set()  # content identities
        self._trust_torchscript = trust_torchscript
        self._restore_thread = None
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if restore_model_option is not RestoreOptions.DO_NOT_RESTORE:
            self.restore(is_async=restore_model_option is RestoreOptions.RESTORE_ASYNCHRONOUSLY)

    # ------------------------------------------------------------ finding
    def _usable(self, version: layout.ExportVersion) -> bool:
        """Whether this predictor can load `version` (subclasses narrow it)."""
        return True

    def _find_version(self) -> tuple[layout.ExportVersion, str] | None:
        """The newest usable version and its content identity (`layout.read_identity`)."""
        if layout.is_complete_version(self._export_dir):
            candidates = [layout.ExportVersion(self._export_dir, int(self._export_dir.name))]
        else:
            candidates = list(reversed(layout.list_versions(self._export_dir)))
        for version in candidates:
            identity = layout.read_identity(version.path)
            if identity is None or identity in self._bad_versions or not self._usable(version):
                continue
            return version, identity
        return None

    # ------------------------------------------------------------ loading
    def _load(self, version: layout.ExportVersion) -> _Loaded:
        export = load_export(version, self._device, self._trust_torchscript)
        feeder = FeatureFeeder(
            export.assets.feature_spec,
            export.input_names or None,
            self._allow_cast,
            allow_nonfinite=self._allow_nonfinite,
        )
        return _Loaded(export, feeder, export.program, read_initial_network_state(export))

    def _run(self, loaded: _Loaded, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = to_torch(arrays, loaded.feeder.spec, self._device)
        with torch.inference_mode():
            return to_numpy(loaded.runner(tensors))

    def restore(self, is_async: bool = False) -> bool:
        """Loads the newest complete version; True when one is loaded.

        Waits up to `timeout` seconds for a version to appear. Returns True at
        once when the newest version is already loaded. A version that fails to
        load (removed meanwhile, or unreadable) is skipped and the next newest
        tried. With `is_async`, loads in a background thread and returns True;
        `predict` keeps using the model already loaded until the new one is
        ready (and waits for it when none was loaded).

        Raises:
          FileNotFoundError: `export_dir` does not exist (unless
            `wait_for_export_dir`); the message names the nearest existing
            parent and what it holds.
          ValueError: `export_dir` holds no versions but exporter
            subdirectories that do (e.g. a model_dir holding
            ``export/latest_exporter_numpy/<step>``); the message names them.
        """
        self._check_export_dir()
        return self._restore_polling(
            is_async,
            self._load_newest,
            self._timeout,
            self._poll_interval_secs,
            _LookedFor(self._export_dir),
        )

    def _check_export_dir(self) -> None:
        export_dir = self._export_dir
        if not export_dir.exists():
            if self._wait_for_export_dir:
                return
            parent = export_dir.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            raise FileNotFoundError(
                f"Export directory {export_dir} does not exist (nearest existing parent: "
                f"{parent}, holding {_entries(parent)}). Pass a directory of export versions, "
                "e.g. <model_dir>/export/latest_exporter_numpy, or wait_for_export_dir=True "
                "to wait for a trainer that has not exported yet."
            )
        if layout.is_complete_version(export_dir) or layout.list_versions(export_dir):
            return
        nested = _exporter_dirs(export_dir)
        if nested:
            listing = "; ".join(
                f"{path.relative_to(export_dir)} (versions "
                f"{', '.join(str(v.version) for v in versions[-5:])})"
                for path, versions in nested
            )
            raise ValueError(
                f"{export_dir} holds no export versions, but these subdirectories do: "
                f"{listing}. Pass one of them as export_dir."
            )

    def _load_newest(self) -> bool:
        while True:
            found = self._find_version()
            if found is None:
                return False
            version, identity = found
            loaded = self._loaded
            if loaded is not None and loaded.export.identity == identity:
                return True
            try:
                self._loaded = self._load(version)
            except Exception as e:  # replaced or removed while loading, or broken
                if layout.read_identity(version.path) != identity:
                    logger.info("Export %s changed while loading; looking again.", version.path)
                else:
                    logger.error("Cannot load export %s; skipping it: %s", version.path, e)
                    self._bad_versions.add(identity)
                continue
            logger.info(
                "Loaded export %s (global step %d, %s, write %s).",
                version.path,
                self.global_step,
                self._loaded.export.program_format,
                self._loaded.export.metadata.get("write_id"),
            )
            return True

    # ------------------------------------------------------------ predicting
    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            self._maybe_join_restore_thread()
            loaded = self._loaded
            if loaded is None:
                raise not_loaded_error(self, str(self._export_dir))
        return loaded

    def predict(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """features: ``{path: array}``, each ``spec.shape`` or ``(B, *spec.shape)``.

        Returns ``{output name: (B, ...) array}`` (B = 1 for unbatched inputs).
        Raises SpecError naming the key and the expected and actual
        shape/dtype when an input does not match the export's specs.
        """
        loaded = self._current()
        return self._run(loaded, loaded.feeder(features))

    def initial_network_state(self) -> dict[str, np.ndarray]:
        """The loaded export's initial network state (empty when stateless)."""
        return {k: v.copy() for k, v in self._current().initial_state.items()}

    def get_feature_specification(self) -> TensorSpecStruct:
        """The export's feature spec (the model's PREDICT packing spec)."""
        return flatten_spec_structure(self._current().export.assets.feature_spec)

    def get_label_specification(self) -> TensorSpecStruct | None:
        label_spec = self._current().export.assets.label_spec
        return None if label_spec is None else flatten_spec_structure(label_spec)

    def init_randomly(self) -> None:
        raise ValueError("Random initialization is not supported by ExportedModelPredictor.")

    def close(self) -> None:
        self._maybe_join_restore_thread()
        self._loaded = None

    def assert_is_loaded(self) -> None:
        self._current()

    @property
    def export(self) -> LoadedExport:
        """The loaded version: assets, metadata, program."""
        return self._current().export

    @property
    def model_version(self) -> int:
        return self._current().export.version.version

    @property
    def global_step(self) -> int:
        """The step the loaded export was made at; -1 before one is loaded."""
        loaded = self._loaded
        return -1 if loaded is None else int(loaded.export.assets.global_step)

    @property
    def model_path(self) -> str:
        return str(self._current().export.version.path)


class _LookedFor:
    """What `restore` waits for; described (with what is there) when it times out."""

    def __init__(self, export_dir: Path) -> None:
        self.export_dir = export_dir

    def __str__(self) -> str:
        return (
            f"complete export version in {self.export_dir} (looked for integer-named "
            f"subdirectories holding {layout.ASSETS_FILENAME}; it holds "
            f"{_entries(self.export_dir)})"
        )


def _entries(directory: Path, limit: int = 10) -> str:
    """A short listing of `directory` for messages."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        return f"nothing readable ({type(e).__name__})"
    if not names:
        return "nothing"
    described = []
    for name in names[:limit]:
        path = directory / name
        if layout.is_version_name(name) and path.is_dir() and not layout.is_complete_version(path):
            described.append(f"{name}/ (incomplete: no {layout.ASSETS_FILENAME})")
        else:
            described.append(f"{name}/" if path.is_dir() else name)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(described) + more


def _exporter_dirs(root: Path, max_depth: int = 3) -> list[tuple[Path, list[layout.ExportVersion]]]:
    """Subdirectories of `root` (down to `max_depth`) that hold complete versions."""
    found = []
    frontier = [root]
    for _ in range(max_depth):
        children = []
        for directory in frontier:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if not entry.is_dir() or layout.is_version_name(entry.name):
                    continue
                path = Path(entry.path)
                versions = layout.list_versions(path)
                if versions:
                    found.append((path, versions))
                else:
                    children.append(path)
        frontier = children
    return found


def read_initial_network_state(export: LoadedExport) -> dict[str, np.ndarray]:
    """A stateful export's initial network state (``{}`` when stateless).

    Read from the same write of the version as `export` (its content identity
    is compared) and checked against the SHA-256 the assets record, like the
    program; the file must hold exactly the state inputs the metadata names.
    """
    entry = export.metadata.get("network_state")
    if not entry:
        return {}
    from safetensors.numpy import load

    name = str(entry.get("initial_state_file"))
    with layout.VersionReader(export.version.path) as reader:
        if export.identity and reader.identity != export.identity:
            raise ExportError(
                export.version.path, "was exported again while its network state was read."
            )
        values = load(reader.read_file(name))
    expected = list(entry.get("inputs") or ())
    if sorted(values) != sorted(expected):
        raise ExportError(
            export.version.path / name,
            f"holds {sorted(values)}, but the export's network state is {sorted(expected)}.",
        )
    return {key: values[key] for key in expected}
