"""Writing export versions: temporary directory, assets last, rename, prune."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from t2r.atomic import atomic_directory, fsync_file, write_safetensors
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


def write_snapshot(
    snapshot: ExportSnapshot,
    export_dir: str | os.PathLike[str],
    version: int | None = None,
    exports_to_keep: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Writes `snapshot` as ``export_dir/<version>/`` and returns that path.

    The version (default: the snapshot's global step) is filled under a
    temporary name — program, weights, ONNX, then ``t2r_assets.json`` — and
    renamed into place. Exporting an existing version replaces it. With
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
    with atomic_directory(final) as tmp:
        program_path = tmp / snapshot.metadata["program_file"]
        if snapshot.program_format == layout.TORCH_EXPORT:
            torch.export.save(snapshot.program, str(program_path))
        else:
            program_path.write_bytes(snapshot.program)
        fsync_file(program_path)
        write_safetensors(
            tmp / layout.WEIGHTS_FILENAME, snapshot.weights, metadata={"format": "pt"}
        )
        if snapshot.onnx_model is not None:
            (tmp / layout.ONNX_FILENAME).write_bytes(snapshot.onnx_model)
            fsync_file(tmp / layout.ONNX_FILENAME)
        assets = T2RAssets(
            feature_spec=snapshot.feature_spec,
            label_spec=snapshot.label_spec,
            global_step=snapshot.global_step,
            metadata={
                **snapshot.metadata,
                "version": version,
                "created_unix_time": time.time(),
                **(metadata or {}),
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
