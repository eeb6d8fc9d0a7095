"""Self-describing exports: a program, its weights and its specs, versioned on disk.

A trained model is exported as ``export_dir/<version>/`` holding a program
that runs without the model's Python code (torch.export ``.pt2``; TorchScript
where export cannot capture the model), the weights in safetensors, optionally
an ONNX model, and ``t2r_assets.json`` (the specs a client feeds, the global
step, the program format). The preprocessor runs inside the program, so
clients feed raw data (uint8 images) as in Tensor2Robot. See
``docs/export_format.md``.

* `export_saved_model`: export a model now.
* `LatestExporter`, `BestExporter`, `create_default_exporters`: exporters for
  ``train_eval_model(create_exporters_fn=...)``.
* `AsyncExportHookBuilder`, `TD3Hooks`: export during training, optionally
  with a lagged copy (imported on first use: they need the training loop).
* `list_versions`, `latest_version`, `load_export`: find and load versions
  without model code and without running anything an export carries (what
  `t2r.predictors` uses); `read_identity` tells two writes of a version apart.
* `export_onnx`, `convert_to_onnx`: the optional ONNX path (``t2r[onnx]``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from t2r.export.errors import ExportError, UnsafeExportError
from t2r.export.exporters import (
    AbstractExporter,
    BestExporter,
    LatestExporter,
    create_default_exporters,
    create_valid_result_larger,
    create_valid_result_smaller,
)
from t2r.export.layout import (
    ASSETS_FILENAME,
    ONNX_FILENAME,
    TORCH_EXPORT,
    TORCH_EXPORT_FILENAME,
    TORCHSCRIPT,
    TORCHSCRIPT_FILENAME,
    WEIGHTS_FILENAME,
    ExportVersion,
    VersionReader,
    copy_version,
    is_complete_version,
    latest_version,
    list_versions,
    prune_versions,
    read_identity,
)
from t2r.export.loading import LoadedExport, load_export
from t2r.export.program import (
    ExportModule,
    ExportSnapshot,
    ProgramBuilder,
    example_inputs,
    export_input_spec,
)
from t2r.export.writer import export_saved_model, program_builder, write_snapshot

if TYPE_CHECKING:
    from t2r.export.hooks import (
        AsyncExportHook,
        AsyncExportHookBuilder,
        LaggedExportDirectory,
        TD3Hooks,
    )
    from t2r.export.onnx_export import OnnxExportError, convert_to_onnx, export_onnx

# Names whose modules import the training loop or onnx: loaded on first use, so
# that predictors (which import t2r.export.layout and .loading) stay light.
_LAZY = {
    "AsyncExportHook": "t2r.export.hooks",
    "AsyncExportHookBuilder": "t2r.export.hooks",
    "LaggedExportDirectory": "t2r.export.hooks",
    "TD3Hooks": "t2r.export.hooks",
    "OnnxExportError": "t2r.export.onnx_export",
    "convert_to_onnx": "t2r.export.onnx_export",
    "export_onnx": "t2r.export.onnx_export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 't2r.export' has no attribute {name!r}")


__all__ = [
    "ASSETS_FILENAME",
    "ONNX_FILENAME",
    "TORCHSCRIPT",
    "TORCHSCRIPT_FILENAME",
    "TORCH_EXPORT",
    "TORCH_EXPORT_FILENAME",
    "WEIGHTS_FILENAME",
    "AbstractExporter",
    "AsyncExportHook",
    "AsyncExportHookBuilder",
    "BestExporter",
    "ExportError",
    "ExportModule",
    "ExportSnapshot",
    "ExportVersion",
    "LaggedExportDirectory",
    "LatestExporter",
    "LoadedExport",
    "OnnxExportError",
    "ProgramBuilder",
    "TD3Hooks",
    "UnsafeExportError",
    "VersionReader",
    "convert_to_onnx",
    "copy_version",
    "create_default_exporters",
    "create_valid_result_larger",
    "create_valid_result_smaller",
    "example_inputs",
    "export_input_spec",
    "export_onnx",
    "export_saved_model",
    "is_complete_version",
    "latest_version",
    "list_versions",
    "load_export",
    "program_builder",
    "prune_versions",
    "read_identity",
    "write_snapshot",
]
