"""Loading an export version without the model's code (what predictors use)."""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from t2r.export import layout
from t2r.export.errors import ExportError, UnsafeExportError
from t2r.export.pt2 import load_exported_program
from t2r.specs import T2RAssets

Program = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class LiftedProgramRunner:
    """Runs a torch.export program's graph with its weights passed as arguments.

    ``ExportedProgram.module()`` re-checks the input structure with pytree
    and fetches every weight through nested module attributes on each call:
    about 0.2 ms per call for the pose_env model on the benchmark machine
    (see docs/benchmarks.md), a third of its latency at batch 1. This calls
    ``exported.graph_module`` directly with a precomputed argument list
    (weights, then the inputs in the signature's order). Input shapes are not
    re-checked here: predictors check them against the specs first. Use
    `for_program`, which returns ``exported.module()`` for programs this does
    not cover (buffer mutations, tokens, script objects).
    """

    def __init__(self, exported: Any) -> None:
        from torch.export.graph_signature import InputKind, OutputKind
        from torch.utils import _pytree as pytree

        signature = exported.graph_signature
        if any(spec.kind != OutputKind.USER_OUTPUT for spec in signature.output_specs):
            raise ValueError("The program mutates state; run it with module().")
        args, kwargs = pytree.tree_unflatten(
            list(range(len(signature.user_inputs))), exported.call_spec.in_spec
        )
        if kwargs or len(args) != 1 or not isinstance(args[0], dict):
            raise ValueError("The program does not take one dict of tensors.")
        keys = iter(sorted(args[0], key=args[0].__getitem__))  # in flattened order
        slots: list[Any] = []  # an input name, or a weight tensor
        for spec in signature.input_specs:
            if spec.kind == InputKind.USER_INPUT:
                slots.append(next(keys))
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                source = (
                    exported.state_dict
                    if spec.target in exported.state_dict
                    else exported.constants
                )
                slots.append(source[spec.target])
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                slots.append(exported.constants[spec.target])
            else:
                raise ValueError(f"Unsupported program input kind {spec.kind}.")
        self._slots = slots
        self._graph_module = exported.graph_module
        self._out_spec = exported.call_spec.out_spec
        self._unflatten = pytree.tree_unflatten

    @classmethod
    def for_program(cls, exported: Any) -> Program:
        """A fast runner for `exported`, or ``exported.module()`` where it does not apply."""
        try:
            return cls(exported)
        except ValueError:
            return exported.module()

    def __call__(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        args = [features[slot] if isinstance(slot, str) else slot for slot in self._slots]
        return self._unflatten(list(self._graph_module(*args)), self._out_spec)


def move_program_to_device(exported: Any, device: torch.device) -> Any:
    """``exported`` with its weights and the devices burnt into its graph moved to `device`.

    ``move_to_device_pass`` rewrites the graph's nodes (e.g. the device of
    ``aten._assert_tensor_metadata``, which every dtype cast records) but not the
    Python code generated from them, and `LiftedProgramRunner` runs that code:
    without a recompile, a program exported on the CPU fails on CUDA with
    "Tensor device mismatch! Expected: cpu".
    """
    from torch.export.passes import move_to_device_pass

    exported = move_to_device_pass(exported, device)
    for module in exported.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            module.recompile()
    return exported


@dataclasses.dataclass
class LoadedExport:
    """A loaded version: its assets and a callable program.

    `program` maps ``{input name: (B, ...) tensor}`` (the required packing-spec
    paths, `input_names`) to ``{output name: (B, ...) tensor}``. `identity`
    is the content identity of the write that was loaded (see
    `layout.read_identity`): re-exporting a version changes it.
    """

    version: layout.ExportVersion
    assets: T2RAssets
    metadata: dict[str, Any]
    program_format: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    program: Program
    identity: str = ""


def as_version(
    path_or_version: layout.ExportVersion | str | os.PathLike[str],
) -> layout.ExportVersion:
    """An `ExportVersion` for a complete version directory; raises ValueError otherwise."""
    if isinstance(path_or_version, layout.ExportVersion):
        return path_or_version
    path = Path(path_or_version)
    if not layout.is_complete_version(path):
        raise ValueError(
            f"{path} is not a complete export version (an integer-named directory holding "
            f"{layout.ASSETS_FILENAME})."
        )
    return layout.ExportVersion(path, int(path.name))


def load_export(
    path_or_version: layout.ExportVersion | str | os.PathLike[str],
    device: str | torch.device = "cpu",
    trust_torchscript: bool = False,
) -> LoadedExport:
    """Loads a complete version's assets and program (no model code is imported).

    The assets and the program are read from one write of the version, even
    while it is being re-exported (`layout.VersionReader`). torch.export
    programs load without honouring any pickle or code in the archive
    (`t2r.export.pt2`), then move to `device` when it is not the CPU.
    TorchScript programs load with ``torch.jit.load``, which unpickles the
    archive's data: only with `trust_torchscript` (exports you made yourself
    or otherwise trust); see ``docs/export_format.md``.

    Raises `t2r.specs.AssetsError` for malformed assets (naming the field),
    `ExportError` naming the file for a damaged, mixed or unsafe program
    (`UnsafeExportError` when it holds something loading would execute), and
    FileNotFoundError when the version was removed while loading.
    """
    version = as_version(path_or_version)
    with layout.VersionReader(version.path) as reader:
        assets = reader.assets
        metadata = reader.metadata
        program_format = metadata["program_format"]
        program_file = metadata["program_file"]
        device = torch.device(device)
        if program_format == layout.TORCHSCRIPT and not trust_torchscript:
            raise UnsafeExportError(
                version.path / program_file,
                "data.pkl",
                "a pickle (TorchScript's loader unpickles it)",
                " Pass trust_torchscript=True to load TorchScript exports from a trusted source.",
            )
        data = reader.read_file(program_file)
        identity = reader.identity
    path = version.path / program_file
    program: Program
    if program_format == layout.TORCH_EXPORT:
        exported = load_exported_program(data, path)
        if device.type != "cpu":
            exported = move_program_to_device(exported, device)
        program = LiftedProgramRunner.for_program(exported)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is the fallback
                program = torch.jit.load(io.BytesIO(data), map_location=device)
        except Exception as e:  # a damaged archive
            raise ExportError(path, f"is not a TorchScript program: {e}") from e
        program.eval()  # type: ignore[attr-defined]
    return LoadedExport(
        version=version,
        assets=assets,
        metadata=metadata,
        program_format=program_format,
        input_names=tuple(metadata.get("input_names") or ()),
        output_names=tuple(metadata.get("output_names") or ()),
        program=program,
        identity=identity,
    )
