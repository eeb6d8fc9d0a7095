"""Turning a T2R model into a program that runs without the model's Python code.

`ExportModule` wraps a model so that it maps a flat dict of raw tensors, keyed
by the paths of the model's packing feature spec (the preprocessor's in-specs,
e.g. uint8 images), to the dict of export outputs: the preprocessor runs inside
the program. `ProgramBuilder` traces it with ``torch.export`` (a dynamic batch
dimension) or, when export cannot capture the model, with ``torch.jit.trace``;
it traces once per model and re-weights the traced program for later versions,
so that exporting during training costs a weight copy, not a trace.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

import t2r
from t2r import network_state
from t2r.export import layout
from t2r.modes import ModeKeys
from t2r.specs import (
    ExtendedTensorSpec,
    SpecError,
    TensorSpecStruct,
    dtype_name,
    filter_required_flat_tensor_spec,
    flatten_spec_structure,
)

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel

logger = logging.getLogger(__name__)

# Example inputs for tracing: a batch of 2 (1 would be specialized), sequences
# of 3 and unknown dims of 2.
_EXAMPLE_BATCH = 2
_EXAMPLE_TIME = 3
_EXAMPLE_UNKNOWN_DIM = 2
MAX_BATCH_SIZE = 1 << 20


class ExportModule(nn.Module):
    """``{packing-spec path: raw tensor}`` -> ``{output name: tensor}`` for a T2R model.

    Runs ``model.model_fn(features, None, PREDICT, validate=False)`` (the
    preprocessor still checks its in- and out-specs) and returns
    `output_names` of its ``export_outputs`` (all of them by default).

    Args:
      t2r_model: the model; its weights are this module's (prefixed ``model.``).
      output_names: the export outputs to return, in this order.
    """

    def __init__(self, t2r_model: AbstractT2RModel, output_names: Sequence[str] | None = None):
        super().__init__()
        self.model = t2r_model
        self.output_names = None if output_names is None else tuple(output_names)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """features: ``{path: (B, ...) tensor}`` -> ``{name: (B, ...) tensor}``."""
        outputs = self.model.model_fn(dict(features), None, ModeKeys.PREDICT, validate=False)
        export_outputs = outputs.export_outputs
        names = self.output_names if self.output_names is not None else tuple(export_outputs)
        return {name: export_outputs[name] for name in names}


class PositionalExportModule(nn.Module):
    """`ExportModule` with positional tensors in and a tuple out (for ONNX)."""

    def __init__(
        self, t2r_model: AbstractT2RModel, input_names: Sequence[str], output_names: Sequence[str]
    ) -> None:
        super().__init__()
        self.inner = ExportModule(t2r_model, output_names)
        self.input_names = tuple(input_names)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.inner(dict(zip(self.input_names, tensors)))
        return tuple(outputs.values())


# ---------------------------------------------------------------- inputs
def export_input_spec(t2r_model: AbstractT2RModel) -> TensorSpecStruct:
    """The program's inputs: the required entries of the PREDICT packing feature spec.

    Optional features are not fed to an exported program (as in Tensor2Robot's
    serving receivers); the model sees them as absent.

    Raises:
      SpecError: a required input is a string spec: an exported program takes
        tensors only (torch has no strings).
    """
    flat = flatten_spec_structure(t2r_model.get_feature_specification_for_packing(ModeKeys.PREDICT))
    required = filter_required_flat_tensor_spec(flat)
    strings = [(key, spec.name) for key, spec in required.items() if spec.is_string]
    if strings:
        key, name = strings[0]
        raise SpecError(
            f"Cannot export {type(t2r_model).__name__}: its PREDICT input {key!r} (spec name "
            f"{name!r}) is a string spec, and an exported program takes tensor inputs only "
            f"(string inputs: {[k for k, _ in strings]}). Turn the strings into tensors on the "
            "client (e.g. tokenize the instruction) and give the preprocessor a tensor spec for "
            "them, or make the string spec optional in PREDICT (optional inputs are not fed "
            "to an export).",
            key=key,
            name=name,
        )
    return required


def example_inputs(
    input_spec: Mapping[str, ExtendedTensorSpec],
    batch_size: int = _EXAMPLE_BATCH,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Tracing inputs: uniform [0, 1) floats, random uint8 (pixels), other integers 0 (valid ids).

    Shapes are ``(batch_size, [3,] *spec.shape)`` with unknown dims of 2.
    """
    inputs = {}
    for key, spec in input_spec.items():
        if spec.shape is None:
            raise ValueError(f"Cannot export {key!r} (spec name {spec.name!r}): unknown rank.")
        shape = [batch_size]
        if spec.is_sequence:
            shape.append(_EXAMPLE_TIME)
        shape += [_EXAMPLE_UNKNOWN_DIM if d is None else d for d in spec.shape]
        dtype = spec.torch_dtype
        if dtype.is_floating_point:
            inputs[key] = torch.rand(shape, generator=generator).to(dtype)
        elif dtype == torch.uint8:
            inputs[key] = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        else:
            inputs[key] = torch.zeros(shape, dtype=dtype)
    return inputs


def _dynamic_shapes(input_spec: Mapping[str, ExtendedTensorSpec]) -> dict[str, dict[int, Any]]:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH_SIZE)
    time_dim = torch.export.Dim("time", min=1, max=MAX_BATCH_SIZE)
    shapes: dict[str, dict[int, Any]] = {}
    for key, spec in input_spec.items():
        dims: dict[int, Any] = {0: batch}
        offset = 1
        if spec.is_sequence:
            dims[1] = time_dim
            offset = 2
        for i, d in enumerate(spec.shape or ()):
            if d is None:
                name = re.sub(r"\W", "_", f"{key}_{i}")
                dims[offset + i] = torch.export.Dim(name, min=1, max=MAX_BATCH_SIZE)
        shapes[key] = dims
    return shapes


def _describe_outputs(outputs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    described = {}
    for name, value in outputs.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"Export output {name!r} is a {type(value).__name__}; export outputs must be "
                "tensors (see create_export_outputs_fn)."
            )
        if value.dim() == 0:
            raise ValueError(
                f"Export output {name!r} is a scalar; export outputs need a batch dimension."
            )
        described[name] = {"shape": [None, *value.shape[1:]], "dtype": dtype_name(value.dtype)}
    return described


@contextlib.contextmanager
def eval_cpu_model(t2r_model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode on the CPU (a copy when it lives on another device)."""
    tensors = itertools.chain(t2r_model.parameters(), t2r_model.buffers())
    if all(t.device.type == "cpu" for t in tensors):
        was_training = t2r_model.training
        t2r_model.eval()
        try:
            yield t2r_model
        finally:
            t2r_model.train(was_training)
    else:
        yield copy.deepcopy(t2r_model).cpu().eval()


def _named_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    named: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    return named


def _structure_key(module: nn.Module) -> tuple[Any, ...]:
    return tuple(
        (name, tuple(t.shape), t.dtype) for name, t in sorted(_named_tensors(module).items())
    )


def _weights_key(module: nn.Module) -> tuple[Any, ...]:
    # data_ptr and the in-place version counter change whenever weights do.
    return tuple((t.data_ptr(), t._version) for t in _named_tensors(module).values())


def cpu_state_dict(t2r_model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state_dict (tensors never share memory)."""
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in t2r_model.state_dict().items():
        weights[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return weights


# --------------------------------------------------------------- snapshots
@dataclasses.dataclass
class ExportSnapshot:
    """Everything one export version holds, copied off the live model.

    Built on the training thread by `ProgramBuilder.snapshot`; writing it
    (`t2r.export.write_snapshot`) touches no live tensor, so it may run in a
    background thread while training goes on.
    """

    global_step: int
    program_format: str
    program: Any  # a torch.export.ExportedProgram, or TorchScript bytes
    weights: dict[str, torch.Tensor]
    feature_spec: TensorSpecStruct
    label_spec: TensorSpecStruct
    metadata: dict[str, Any]
    onnx_model: bytes | None = None
    # Stateful models: {network_state/<path>: per-example initial value}.
    initial_network_state: dict[str, torch.Tensor] | None = None


@dataclasses.dataclass
class _Traced:
    program_format: str
    program: Any
    structure: tuple[Any, ...]
    input_names: tuple[str, ...]
    outputs: dict[str, dict[str, Any]]
    dynamic_batch: bool
    fallback_reason: str | None


@contextlib.contextmanager
def _quiet_export_failure() -> Iterator[None]:
    """Keeps torch.export's failure output off the console while trying export.

    When export fails, torch prints the partial FX graph to stderr (and its
    symbolic-shapes logger warns), although the caller falls back to
    TorchScript and records the reason. Here stderr is captured for the
    duration: on failure the graph goes to the debug log, on success anything
    captured is written through. Torch's symbolic-shapes warnings are raised
    to ERROR meanwhile.
    """
    shapes_logger = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    previous_level = shapes_logger.level
    captured = io.StringIO()
    shapes_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except Exception as e:
        text = captured.getvalue()
        if text.strip():
            logger.debug("torch.export's output before it failed:\n%s", text)
        raise e
    else:
        if captured.getvalue():
            sys.stderr.write(captured.getvalue())
    finally:
        shapes_logger.setLevel(previous_level)


class ProgramBuilder:
    """Traces a model once and makes export snapshots of its current weights.

    Args:
      program_format: ``'torch.export'`` (falls back to TorchScript when export
        fails, recording why), or ``'torchscript'`` to skip torch.export.
      export_onnx: also convert each version to ONNX (``t2r[onnx]``); a model
        that does not convert cleanly is exported without it (the reason is
        recorded in the assets).
    """

    def __init__(self, program_format: str = layout.TORCH_EXPORT, export_onnx: bool = False):
        if program_format not in layout.PROGRAM_FORMATS:
            raise ValueError(
                f"program_format must be one of {layout.PROGRAM_FORMATS}, got {program_format!r}."
            )
        self.program_format = program_format
        self.export_onnx = export_onnx
        self._traced: _Traced | None = None
        self._last: tuple[tuple[Any, ...], ExportSnapshot] | None = None

    # ------------------------------------------------------------ tracing
    def _trace(self, model: nn.Module) -> _Traced:
        input_spec = export_input_spec(model)  # type: ignore[arg-type]
        if not input_spec:
            raise ValueError(f"{type(model).__name__} has no required PREDICT features to export.")
        inputs = example_inputs(input_spec, generator=torch.Generator().manual_seed(0))
        module = ExportModule(model).eval()  # type: ignore[arg-type]
        with torch.no_grad():
            outputs = _describe_outputs(module(inputs))
        module.output_names = tuple(outputs)
        structure = _structure_key(model)
        fallback_reason = None
        start = time.perf_counter()
        if self.program_format == layout.TORCH_EXPORT:
            try:
                with _quiet_export_failure():
                    program = torch.export.export(
                        module,
                        (inputs,),
                        dynamic_shapes=(_dynamic_shapes(input_spec),),
                        strict=False,
                    )
                logger.info(
                    "Traced %s with torch.export in %.1f s.",
                    type(model).__name__,
                    time.perf_counter() - start,
                )
                return _Traced(
                    layout.TORCH_EXPORT, program, structure, tuple(inputs), outputs, True, None
                )
            except Exception as e:  # any failure of export: fall back to TorchScript
                fallback_reason = f"{type(e).__name__}: {e}".strip()[:2000]
                logger.warning(
                    "torch.export could not capture %s; falling back to TorchScript tracing. "
                    "Reason: %s",
                    type(model).__name__,
                    fallback_reason.splitlines()[0] if fallback_reason else "",
                )
        script = self._jit_trace(module, inputs)
        return _Traced(
            layout.TORCHSCRIPT, script, structure, tuple(inputs), outputs, True, fallback_reason
        )

    @staticmethod
    def _jit_trace(module: ExportModule, inputs: dict[str, torch.Tensor]) -> Any:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the fallback
            return torch.jit.trace(module, (inputs,), strict=False, check_trace=False)

    def _reweighted(
        self, traced: _Traced, model: nn.Module, weights: dict[str, torch.Tensor]
    ) -> torch.export.ExportedProgram:
        """A new ExportedProgram with the traced graph and (CPU copies of) current weights."""
        program = traced.program
        live = _named_tensors(model)
        by_name = {f"model.{k}": v for k, v in weights.items()}

        def current(key: str, template: torch.Tensor) -> torch.Tensor:
            if key in by_name:
                return by_name[key]
            name = key.removeprefix("model.")
            if key.startswith("model.") and name in live:
                return live[name].detach().to("cpu", copy=True)
            return template  # a constant of the trace (not a model tensor)

        state_dict: dict[str, Any] = {}
        for key, template in program.state_dict.items():
            tensor = current(key, template)
            if isinstance(template, nn.Parameter):
                tensor = nn.Parameter(tensor, requires_grad=template.requires_grad)
            state_dict[key] = tensor
        constants = {
            key: current(key, value) if isinstance(value, torch.Tensor) else value
            for key, value in program.constants.items()
        }
        return torch.export.ExportedProgram(
            root=program.graph_module,
            graph=_copy_graph(program.graph),
            graph_signature=program.graph_signature,
            state_dict=state_dict,
            range_constraints=program.range_constraints,
            module_call_graph=program.module_call_graph,
            example_inputs=program.example_inputs,
            constants=constants,
            verifiers=program.verifiers,
        )

    # ------------------------------------------------------------ snapshot
    def snapshot(self, t2r_model: AbstractT2RModel, global_step: int) -> ExportSnapshot:
        """Copies what a version of `t2r_model` at `global_step` holds (call on its thread).

        The first call traces (seconds); later calls copy the weights into the
        traced program (TorchScript programs are traced again). Calls with the
        same step and unchanged weights return the same snapshot.
        """
        key = (global_step, _weights_key(t2r_model), _structure_key(t2r_model))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        traced = self._traced
        fresh = traced is None or traced.structure != _structure_key(t2r_model)
        onnx_model, onnx_error = None, None
        program: Any
        if traced is not None and not fresh and traced.program_format == layout.TORCH_EXPORT:
            # The common case during training: copy the weights into the traced graph.
            weights = cpu_state_dict(t2r_model)
            program = self._reweighted(traced, t2r_model, weights)
            if self.export_onnx:
                with eval_cpu_model(t2r_model) as model:
                    onnx_model, onnx_error = _try_onnx(
                        model, traced.input_names, tuple(traced.outputs)
                    )
        else:
            with eval_cpu_model(t2r_model) as model:
                if traced is None or fresh:
                    traced = self._trace(model)
                    self._traced = traced
                weights = cpu_state_dict(model)
                if traced.program_format == layout.TORCH_EXPORT:
                    program = self._reweighted(traced, model, weights)
                else:
                    # A traced ScriptModule shares the live weights: serialize it now.
                    script = traced.program
                    if not fresh or script is None:
                        module = ExportModule(model, tuple(traced.outputs))  # type: ignore[arg-type]
                        script = self._jit_trace(module, _inputs(model))
                    traced.program = None
                    buffer = io.BytesIO()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DeprecationWarning)
                        torch.jit.save(script, buffer)
                    program = buffer.getvalue()
                if self.export_onnx:
                    onnx_model, onnx_error = _try_onnx(
                        model, traced.input_names, tuple(traced.outputs)
                    )
        cls = type(t2r_model)
        metadata: dict[str, Any] = {
            "export_format_version": layout.EXPORT_FORMAT_VERSION,
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "program_format": traced.program_format,
            "program_file": layout.TORCH_EXPORT_FILENAME
            if traced.program_format == layout.TORCH_EXPORT
            else layout.TORCHSCRIPT_FILENAME,
            "weights_file": layout.WEIGHTS_FILENAME,
            "onnx_file": layout.ONNX_FILENAME if onnx_model is not None else None,
            "input_names": list(traced.input_names),
            "outputs": traced.outputs,
            "output_names": list(traced.outputs),
            "dynamic_batch": traced.dynamic_batch,
            "torch_version": torch.__version__,
            "t2r_version": t2r.__version__,
        }
        initial_state = _initial_network_state(t2r_model)
        if initial_state:
            metadata["network_state"] = {
                "inputs": list(initial_state),
                "outputs": [network_state.output_name(k) for k in initial_state],
                "initial_state_file": layout.INITIAL_NETWORK_STATE_FILENAME,
            }
        if traced.fallback_reason:
            metadata["torch_export_error"] = traced.fallback_reason
        if onnx_error:
            metadata["onnx_error"] = onnx_error
        snapshot = ExportSnapshot(
            global_step=int(global_step),
            program_format=traced.program_format,
            program=program,
            weights=weights,
            feature_spec=flatten_spec_structure(
                t2r_model.get_feature_specification_for_packing(ModeKeys.PREDICT)
            ),
            label_spec=flatten_spec_structure(
                t2r_model.get_label_specification_for_packing(ModeKeys.PREDICT)
            ),
            metadata=metadata,
            onnx_model=onnx_model,
            initial_network_state=initial_state or None,
        )
        self._last = (key, snapshot)
        return snapshot


def _initial_network_state(t2r_model: AbstractT2RModel) -> dict[str, torch.Tensor]:
    """``{network_state/<path>: initial value}`` (CPU, per example); {} when stateless."""
    state_spec = flatten_spec_structure(t2r_model.get_network_state_specification())
    if not state_spec:
        return {}
    initial = flatten_spec_structure(t2r_model.get_initial_network_state())
    values: dict[str, torch.Tensor] = {}
    for path, spec in state_spec.items():
        value = initial.get(path)
        owner = f"{type(t2r_model).__name__}.get_initial_network_state()"
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{owner} has no tensor for {path!r}; it has {sorted(initial)}.")
        if tuple(value.shape) != tuple(spec.shape or ()) or value.dtype != spec.dtype:
            raise ValueError(
                f"{owner}[{path!r}] has shape {tuple(value.shape)} dtype "
                f"{dtype_name(value.dtype)}; the network state spec says "
                f"{tuple(spec.shape or ())} {dtype_name(spec.dtype)} (per example, no batch)."
            )
        values[network_state.input_name(path)] = value.detach().to("cpu", copy=True).contiguous()
    return values


def _copy_graph(graph: torch.fx.Graph) -> torch.fx.Graph:
    """An independent copy of a graph (same node names and metadata).

    Each snapshot gets its own graph: ExportedProgram's constructor and
    serialization touch the graph, and a background writer may be serializing
    the previous snapshot while the next one is built.
    """
    copied = torch.fx.Graph()
    result = copied.graph_copy(graph, {})
    output = copied.output(result)
    for node in reversed(graph.nodes):
        if node.op == "output":
            output.meta = copy.copy(node.meta)
            break
    return copied


def _inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    return example_inputs(export_input_spec(model), generator=torch.Generator().manual_seed(0))  # type: ignore[arg-type]


def _try_onnx(
    model: nn.Module, input_names: Sequence[str], output_names: Sequence[str]
) -> tuple[bytes | None, str | None]:
    from t2r.export.onnx_export import convert_to_onnx

    try:
        return convert_to_onnx(model, input_names, output_names), None  # type: ignore[arg-type]
    except Exception as e:  # a model that does not convert cleanly: export without ONNX
        reason = f"{type(e).__name__}: {e}".strip()[:2000]
        logger.warning(
            "%s does not convert cleanly to ONNX; exporting without it. Reason: %s",
            type(model).__name__,
            reason.splitlines()[0] if reason else "",
        )
        return None, reason
