"""Reading a torch.export ``.pt2`` archive without running anything it carries.

``torch.export.load`` trusts its archive: a weight or constant marked
``use_pickle`` is unpickled with ``weights_only=False``, sample inputs the
safe unpickler refuses are retried unsafely, custom and opaque objects are
unpickled, an AOTInductor entry loads a shared library, the shape
expressions (``expr_str``) are parsed by ``sympy.sympify`` (``eval``), and
``guards_code`` is Python source that ``ExportedProgram.module()`` executes.
Any of them runs a tampered file's payload.

`load_exported_program` reads the archive from bytes already in memory and
refuses every such entry before anything is deserialized: weights and
constants come only from raw tensor records described by JSON, sample
inputs are never unpickled (a static scan refuses ones that would call
anything but tensor rebuilding, which torch would retry unsafely),
expressions must be plain sympy arithmetic over symbols (checked token by
token before sympy sees them), and guard code (input shape checks as Python
source) is dropped. What remains is torch's JSON graph deserializer and its
verifier, which admits only registered operators.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickletools
import re
import tokenize
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from t2r.export.errors import ExportError, UnsafeExportError

# Names a shape expression may use: sympy's constructors and assumptions, and
# torch's sympy functions (the names ExportedProgramDeserializer provides).
_SYMPY_NAMES = frozenset(
    """
    Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs floor ceiling sqrt
    Eq Ne Lt Le Gt Ge StrictLessThan StrictGreaterThan LessThan GreaterThan
    Equality Unequality And Or Not Xor Piecewise ExprCondPair ITE
    oo zoo nan int_oo IntInfinity NegativeIntInfinity Infinity NegativeInfinity
    true false True False BooleanTrue BooleanFalse Half One Zero NegativeOne
    positive negative nonnegative nonpositive integer real finite infinite zero
    nonzero even odd commutative rational extended_real extended_positive
    extended_nonnegative extended_negative extended_nonpositive
    FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv
    LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv
    IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt
    RoundDecimal ToFloat Identity OpaqueUnaryFn_sqrt
    """.split()
)
_SYMBOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_SYMBOL_STRING = re.compile(r"""(?:'[A-Za-z][A-Za-z0-9_]*'|"[A-Za-z][A-Za-z0-9_]*")\Z""")
_OPERATORS = frozenset("( ) , = + - * / // ** % < > <= >= == != & | ~ ^".split())
_MAX_EXPRESSION_CHARS = 10_000
_MAX_NUMBER_CHARS = 64


def check_shape_expression(expr: str) -> str | None:
    """Why `expr` is not plain sympy arithmetic over symbols, or None when it is.

    Only allow-listed names (sympy constructors, assumptions, torch's sympy
    functions, symbol names such as ``s29``), quoted symbol names, short
    numbers and arithmetic operators; no attribute access, subscripts,
    f-strings, lambdas or calls of anything else.
    """
    if len(expr) > _MAX_EXPRESSION_CHARS:
        return f"longer than {_MAX_EXPRESSION_CHARS} characters"
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
        return f"not tokenizable ({e})"
    for token in tokens:
        kind, text = token.type, token.string
        if kind in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if kind == tokenize.NAME:
            if text in _SYMPY_NAMES or (
                _SYMBOL_NAME.match(text) and re.match(r"[a-z]+[0-9]+\Z", text)
            ):
                continue
            return f"uses the name {text!r}"
        if kind == tokenize.STRING:
            if _SYMBOL_STRING.match(text):
                continue
            return f"holds the string {text[:40]!r}"
        if kind == tokenize.NUMBER:
            if len(text) <= _MAX_NUMBER_CHARS:
                continue
            return "holds a number too long"
        if kind == tokenize.OP and text in _OPERATORS:
            continue
        return f"holds {tokenize.tok_name[kind]} {text[:40]!r}"
    return None


# Allowed callables in torch.save'd sample inputs (tensors in dicts/tuples).
_SAMPLE_INPUT_GLOBALS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "OrderedDict"),
        ("torch", "Size"),
    }
)
_STORAGE_NAME = re.compile(r"[A-Z][A-Za-z0-9]*Storage\Z")
_IMPORTING_OPCODES = frozenset({"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"})


def pickle_globals_problem(data: bytes) -> str | None:
    """Why the pickle `data` could call something other than tensor rebuilding, or None.

    A static scan (``pickletools.genops``; nothing is unpickled): every
    ``GLOBAL`` must be an allow-listed tensor-rebuilding callable or a torch
    storage type, and opcodes that import by computed names are refused.
    """
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _IMPORTING_OPCODES:
                return f"uses the {opcode.name} opcode"
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                if (module, name) in _SAMPLE_INPUT_GLOBALS or (
                    module == "torch" and _STORAGE_NAME.match(name)
                ):
                    continue
                return f"calls {module}.{name}"
    except Exception as e:
        return f"is not a readable pickle ({e})"
    return None


def _check_sample_inputs(data: bytes, entry: str, path: Path) -> None:
    """Refuses sample inputs that torch.export.load would unpickle into a call.

    They are never read here; torch retries them with ``weights_only=False``,
    so a payload in them is refused rather than left in place.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pickles = [n for n in inner.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise UnsafeExportError(path, entry, "no torch.save archive (a raw pickle?)")
            problem = pickle_globals_problem(inner.read(pickles[0]))
    except zipfile.BadZipFile:
        raise UnsafeExportError(path, entry, "a raw pickle, not a torch.save archive") from None
    if problem is not None:
        raise UnsafeExportError(path, entry, f"a pickle that {problem}")


def _walk(value: Any) -> Iterator[Any]:
    """Every object in a deserialized schema tree (dataclasses, unions, lists, dicts)."""
    from torch._export.serde.union import _Union

    stack = [value]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, _Union):
            stack.append(item.value)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def _archive_names(data: bytes, path: Path) -> tuple[str, list[str]]:
    """The archive's root folder and its entry names below it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ExportError(path, f"is not a torch.export archive: {e}") from None
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or not all("/" in name for name in names):
        raise ExportError(path, "is not a torch.export archive (no single root folder).")
    root = roots.pop()
    return root, [name.split("/", 1)[1] for name in names]


def _refuse_entries(names: list[str], path: Path) -> str:
    """Refuses entries that torch.export.load would execute; returns the model's name."""
    from torch.export.pt2_archive import constants as c

    for name in names:
        if name.startswith((c.AOTINDUCTOR_DIR, c.MTIA_DIR, c.EXECUTORCH_DIR)):
            raise UnsafeExportError(path, name, "compiled code (a shared library or kernels)")
        if name.startswith((c.WEIGHTS_DIR, c.CONSTANTS_DIR)) and name.endswith(".pt"):
            raise UnsafeExportError(path, name, "a pickled legacy weights or constants file")
    models = [
        name[len(c.MODELS_DIR) : -len(".json")]
        for name in names
        if name.startswith(c.MODELS_DIR) and name.endswith(".json")
    ]
    if len(models) != 1:
        raise ExportError(path, f"holds {len(models)} programs; t2r exports hold one.")
    return models[0]


def _check_payload_config(config: Any, entry: str, path: Path, constants: bool) -> None:
    from torch.export.pt2_archive import constants as c

    for fqn, payload in config.config.items():
        if payload.use_pickle:
            raise UnsafeExportError(path, f"{entry} ({fqn})", "a pickled tensor")
        if constants and not payload.path_name.startswith(c.TENSOR_CONSTANT_FILENAME_PREFIX):
            raise UnsafeExportError(path, f"{entry} ({fqn})", "a pickled object")
        if payload.tensor_meta is None:
            raise ExportError(path, f"{entry}: {fqn} has no tensor description.")


def load_exported_program(data: bytes, path: str | Path) -> torch.export.ExportedProgram:
    """The ExportedProgram in `data` (the bytes of the ``.pt2`` file `path`).

    Raises `UnsafeExportError` (naming `path` and the entry) for anything
    that would unpickle or run code, `ExportError` for any other damage.
    Nothing is read from disk: `path` only names the file in errors.
    """
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.pt2_archive import _package as package
    from torch.export.pt2_archive import constants as c

    path = Path(path)
    root, names = _archive_names(data, path)
    model = _refuse_entries(names, path)
    try:
        with package.PT2ArchiveReader(io.BytesIO(data)) as reader:
            version = reader.read_string(c.ARCHIVE_VERSION_PATH)
            if version != c.ARCHIVE_VERSION_VALUE:
                raise ExportError(
                    path,
                    f"has archive version {version!r}; torch reads {c.ARCHIVE_VERSION_VALUE!r}.",
                )
            sample_inputs = c.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
            if sample_inputs in names:
                _check_sample_inputs(reader.read_bytes(sample_inputs), sample_inputs, path)
            model_entry = c.MODELS_FILENAME_FORMAT.format(model)
            try:
                program_json = json.loads(reader.read_bytes(model_entry).decode("utf-8"))
            except RecursionError:
                raise ExportError(path, f"{model_entry} is nested too deeply.") from None
            serialized = _dict_to_dataclass(schema.ExportedProgram, program_json)
            # Guard code is Python source that ExportedProgram.module() would exec:
            # dropped. It re-checks input shapes, which predictors check against
            # the specs before calling the program.
            serialized.guards_code = []
            for item in _walk(serialized):
                if isinstance(item, schema.SymExpr):
                    problem = check_shape_expression(item.expr_str)
                    if problem is not None:
                        raise UnsafeExportError(
                            path, model_entry, f"a shape expression that {problem}"
                        )
            for entry, is_constants in (
                (c.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model), False),
                (c.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model), True),
            ):
                config = package._load_payload_config(reader, entry)
                _check_payload_config(config, entry, path, is_constants)
            state_dict = package._load_state_dict(reader, model)
            constants = package._load_constants(reader, model)
    except (ExportError, UnsafeExportError):
        raise
    except Exception as e:  # any other damage: a broken archive or JSON
        raise ExportError(
            path, f"cannot be read as a torch.export program: {type(e).__name__}: {e}"
        ) from e
    del root
    try:
        # Sample inputs are pickles: never read them (example_inputs=None).
        return ExportedProgramDeserializer(None).deserialize(
            serialized, state_dict, constants, None
        )
    except RecursionError:
        raise ExportError(path, "holds a program nested too deeply.") from None
    except Exception as e:
        raise ExportError(path, f"holds an invalid program: {type(e).__name__}: {e}") from e
