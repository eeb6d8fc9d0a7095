"""Optional ONNX export (the ``t2r[onnx]`` extra: onnx and onnxruntime).

The model is traced with TorchScript (``torch.onnx.export(dynamo=False)``:
the torch.export-based ONNX exporter needs ``onnxscript``, which the extra
does not install) into an ONNX graph whose inputs are named by the packing
spec's paths and whose outputs are the export outputs, with a dynamic batch
dimension. Every conversion is checked: onnxruntime must reproduce the eager
model's outputs at batch sizes 1 and 3, else `OnnxExportError` is raised.
Models that do not convert cleanly (ops without an ONNX symbolic, data-
dependent control flow) are exported without ONNX by the exporters.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from t2r.export.program import (
    ExportModule,
    PositionalExportModule,
    eval_cpu_model,
    example_inputs,
    export_input_spec,
)

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
_CHECK_BATCH_SIZES = (1, 3)


class OnnxExportError(RuntimeError):
    """A model could not be converted to ONNX, or the result does not match it."""


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "ONNX export needs the onnx extra: pip install 't2r[onnx]' (onnx, onnxruntime)."
        ) from e


def convert_to_onnx(
    t2r_model: AbstractT2RModel,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset_version: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> bytes:
    """The model's PREDICT program as a serialized ONNX model.

    Args:
      t2r_model: the model (moved to the CPU as a copy when it lives elsewhere).
      input_names: the required packing-spec paths to feed; all by default.
      output_names: the export outputs; all by default.
      opset_version: the ONNX opset.
      check: run onnxruntime at batch 1 and 3 and compare with the eager model.
      atol, rtol: the tolerances of that check.

    Raises:
      OnnxExportError: the conversion failed or does not reproduce the model.
    """
    _require_onnx()
    import onnx

    with eval_cpu_model(t2r_model) as model:
        spec = export_input_spec(model)  # type: ignore[arg-type]
        names = tuple(input_names) if input_names is not None else tuple(spec)
        generator = torch.Generator().manual_seed(0)
        inputs = example_inputs({k: spec[k] for k in names}, generator=generator)
        eager = ExportModule(model)  # type: ignore[arg-type]
        if output_names is None:
            with torch.no_grad():
                output_names = tuple(eager(inputs))
        outputs = tuple(output_names)
        module = PositionalExportModule(model, names, outputs).eval()  # type: ignore[arg-type]
        dynamic_axes = {name: {0: "batch"} for name in (*names, *outputs)}
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    tuple(inputs[k] for k in names),
                    buffer,  # type: ignore[arg-type]
                    dynamo=False,
                    input_names=list(names),
                    output_names=list(outputs),
                    dynamic_axes=dynamic_axes,
                    opset_version=opset_version,
                )
            data = buffer.getvalue()
            onnx.checker.check_model(onnx.load_from_string(data))
        except Exception as e:
            raise OnnxExportError(
                f"{type(model).__name__} does not convert to ONNX: {type(e).__name__}: {e}"
            ) from e
        if check:
            _check_parity(data, model, spec, names, outputs, atol, rtol)
    return data


def _check_parity(
    data: bytes,
    model: torch.nn.Module,
    spec: dict,
    names: tuple[str, ...],
    outputs: tuple[str, ...],
    atol: float,
    rtol: float,
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    eager = ExportModule(model, outputs)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1)
    for batch_size in _CHECK_BATCH_SIZES:
        inputs = example_inputs({k: spec[k] for k in names}, batch_size, generator)
        with torch.no_grad():
            expected = eager(inputs)
        try:
            got = session.run(list(outputs), {k: v.numpy() for k, v in inputs.items()})
        except Exception as e:
            raise OnnxExportError(
                f"onnxruntime cannot run the ONNX export of {type(model).__name__} at batch "
                f"{batch_size}: {e}"
            ) from e
        for name, value in zip(outputs, got):
            want = expected[name].float().numpy()
            if value.shape != want.shape or not np.allclose(value, want, atol=atol, rtol=rtol):
                diff = float(np.max(np.abs(value - want))) if value.shape == want.shape else "shape"
                raise OnnxExportError(
                    f"The ONNX export of {type(model).__name__} does not match the model: output "
                    f"{name!r} at batch {batch_size}: shape {value.shape} vs {want.shape}, max "
                    f"abs difference {diff} (atol {atol})."
                )


def export_onnx(
    t2r_model: AbstractT2RModel,
    path: str | os.PathLike[str],
    opset_version: int = DEFAULT_OPSET,
    check: bool = True,
) -> bytes:
    """Converts the model (see `convert_to_onnx`) and writes it to `path`; returns the bytes."""
    from t2r.atomic import atomic_write_bytes

    data = convert_to_onnx(t2r_model, opset_version=opset_version, check=check)
    atomic_write_bytes(path, data)
    return data
