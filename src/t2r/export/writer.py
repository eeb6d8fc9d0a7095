"""Writing export versions: temporary directory, assets last, rename, prune."""

from __future__ import annotations

import io
import logging
import os
import secrets
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2r.atomic import atomic_directory, write_safetensors
from t2r.export import layout
from t2r.export.program import ExportSnapshot, ProgramBuilder
from t2r.specs import T2RAssets, write_t2r_assets_to_file

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel

logger = logging.getLogger(__name__)

# One builder (and so one trace) per model and settings, shared by all exporters.
_BUILDERS: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, bool], ProgramBuilder]] = (
    weakref.WeakKeyDictionary()
)


def program_builder(
    t2r_model: AbstractT2RModel,
    program_format: str = layout.TORCH_EXPORT,
    export_onnx: bool = False,
) -> ProgramBuilder:
    """The shared `ProgramBuilder` of `t2r_model` for these settings."""
    builders = _BUILDERS.setdefault(t2r_model, {})
    key = (program_format, export_onnx)
    if key not in builders:
        builders[key] = ProgramBuilder(program_format, export_onnx)
    return builders[key]


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_snapshot(
    snapshot: ExportSnapshot,
    export_dir: str | os.PathLike[str],
    version: int | None = None,
    exports_to_keep: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `snapshot` as ``export_dir/<version>/`` and returns that path.

    The version (default: the snapshot's global step) is filled under a
    temporary name — program, weights, ONNX, then ``t2r_assets.json``, which
    records a fresh ``write_id`` and each file's SHA-256 — and renamed into
    place. Exporting an existing version replaces it atomically (see
    `t2r.atomic.publish_directory`). With
    `exports_to_keep`, older versions beyond that many are removed afterwards.
    `metadata` adds entries to the assets' metadata (e.g. eval metrics).
    """
    root = Path(export_dir)
    root.mkdir(parents=True, exist_ok=True)
    version = snapshot.global_step if version is None else int(version)
    if version < 0:
        raise ValueError(f"Export versions are non-negative integers, got {version}.")
    final = root / str(version)
    start = time.perf_counter()
    files: dict[str, dict[str, Any]] = {}
    with atomic_directory(final) as tmp:
        program_name = snapshot.metadata["program_file"]
        if snapshot.program_format == layout.TORCH_EXPORT:
            buffer = io.BytesIO()
            torch.export.save(snapshot.program, buffer)
            program_bytes = buffer.getvalue()
        else:
            program_bytes = snapshot.program
        _write_file(tmp / program_name, program_bytes)
        files[program_name] = layout.file_record(program_bytes)
        write_safetensors(
            tmp / layout.WEIGHTS_FILENAME, snapshot.weights, metadata={"format": "pt"}
        )
        files[layout.WEIGHTS_FILENAME] = layout.file_record(
            (tmp / layout.WEIGHTS_FILENAME).read_bytes()
        )
        if snapshot.initial_network_state:
            write_safetensors(
                tmp / layout.INITIAL_NETWORK_STATE_FILENAME, snapshot.initial_network_state
            )
            files[layout.INITIAL_NETWORK_STATE_FILENAME] = layout.file_record(
                (tmp / layout.INITIAL_NETWORK_STATE_FILENAME).read_bytes()
            )
        if snapshot.onnx_model is not None:
            _write_file(tmp / layout.ONNX_FILENAME, snapshot.onnx_model)
            files[layout.ONNX_FILENAME] = layout.file_record(snapshot.onnx_model)
        assets = T2RAssets(
            feature_spec=snapshot.feature_spec,
            label_spec=snapshot.label_spec,
            global_step=snapshot.global_step,
            metadata={
                **snapshot.metadata,
                "version": version,
                "created_unix_time": time.time(),
                **(metadata or {}),
                "write_id": secrets.token_hex(16),
                "files": files,
            },
        )
        write_t2r_assets_to_file(assets, tmp / layout.ASSETS_FILENAME)  # last
    logger.info("Exported %s in %.2f s.", final, time.perf_counter() - start)
    if exports_to_keep:
        layout.prune_versions(root, exports_to_keep)
    return final


def export_saved_model(
    t2r_model: AbstractT2RModel,
    export_dir: str | os.PathLike[str],
    global_step: int = 0,
    version: int | None = None,
    exports_to_keep: int | None = None,
    export_onnx: bool = False,
    program_format: str = layout.TORCH_EXPORT,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Exports `t2r_model` as ``export_dir/<version>/`` (synchronously); returns its path.

    The program maps raw features (the PREDICT packing spec, e.g. uint8
    images) to the export outputs with the preprocessor inside; see
    ``docs/export_format.md``. `version` defaults to `global_step`.
    """
    snapshot = program_builder(t2r_model, program_format, export_onnx).snapshot(
        t2r_model, global_step
    )
    return write_snapshot(snapshot, export_dir, version, exports_to_keep, metadata)
