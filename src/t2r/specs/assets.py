"""The spec assets an export carries: feature spec, label spec, global step.

t2r writes them as JSON (``t2r_assets.json``), which keeps every spec field
(unknown dims, is_sequence, dataset_key). Reading also accepts Tensor2Robot's
text-format protobuf ``t2r_assets.pbtxt`` so that specs of existing T2R exports
can be loaded, and `t2r_assets_to_pbtxt` writes that format for T2R's tools;
its message types are defined here at import time, without protoc.

String specs are ``"dtype": "string"`` in JSON and ``DT_STRING`` (7) in pbtxt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

import t2r
from t2r.atomic import atomic_write_text
from t2r.specs.dtypes import TF_ENUM_TO_NAME, dtype_name
from t2r.specs.errors import AssetsError, SpecError
from t2r.specs.extended_tensor_spec import ExtendedTensorSpec
from t2r.specs.structure import flatten_spec_structure
from t2r.specs.tensor_spec_struct import TensorSpecStruct

T2R_ASSETS_FILENAME = "t2r_assets.json"
T2R_PBTXT_ASSETS_FILENAME = "t2r_assets.pbtxt"
_FORMAT = "t2r_assets"
_FORMAT_VERSION = 1


@dataclasses.dataclass
class T2RAssets:
    """What a client needs to feed an exported model.

    feature_spec / label_spec: the specs a client feeds (a model's preprocessor
    in-specs). metadata: further JSON-ready facts (e.g. the model class name).
    """

    feature_spec: TensorSpecStruct
    label_spec: TensorSpecStruct | None = None
    global_step: int = 0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _specs_to_dict(structure: Any, field: str) -> dict[str, Any]:
    out = {}
    for key, spec in flatten_spec_structure(structure).items():
        if not isinstance(spec, ExtendedTensorSpec):
            raise SpecError(
                f"{field} entry {key!r} must be a spec, got {type(spec).__name__}.", key=key
            )
        out[key] = spec.to_dict()
    return out


def _specs_from_dict(data: dict[str, Any]) -> TensorSpecStruct:
    return TensorSpecStruct((k, ExtendedTensorSpec.from_dict(v)) for k, v in data.items())


def write_t2r_assets_to_file(t2r_assets: T2RAssets, filename: str | os.PathLike[str]) -> None:
    """Writes the assets as JSON, atomically."""
    data = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "t2r_version": t2r.__version__,
        "global_step": int(t2r_assets.global_step),
        "feature_spec": _specs_to_dict(t2r_assets.feature_spec, "feature_spec"),
        "label_spec": None
        if t2r_assets.label_spec is None
        else _specs_to_dict(t2r_assets.label_spec, "label_spec"),
        "metadata": t2r_assets.metadata,
    }
    atomic_write_text(filename, json.dumps(data, indent=2) + "\n")


def load_t2r_assets_to_file(filename: str | os.PathLike[str]) -> T2RAssets:
    """Reads assets written by `write_t2r_assets_to_file` or T2R's pbtxt.

    (The name keeps Tensor2Robot's, odd as it is.) Raises `AssetsError`
    naming the file and the field for any malformed content.
    """
    path = Path(filename)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AssetsError(path, None, f"No assets file at {path}.") from None
    except OSError as e:
        raise AssetsError(path, None, f"cannot be read: {e}") from e
    return parse_t2r_assets(data, path)


def parse_t2r_assets(data: bytes, path: str | os.PathLike[str]) -> T2RAssets:
    """The assets in `data`, the bytes of the file `path` (named in errors).

    JSON (``t2r_assets.json``) or Tensor2Robot's text-format protobuf. Raises
    `AssetsError` naming `path` and the field for any malformed content.
    """
    path = Path(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssetsError(path, None, f"is not UTF-8 (byte offset {e.start}).") from None
    if text.lstrip().startswith("{"):
        return _load_json_assets(text, path)
    try:
        return _load_pbtxt_assets(text, path)
    except AssetsError:
        raise
    except SpecError as e:
        raise AssetsError(path, e.key, _short(str(e).removeprefix(f"{path}: "), 500)) from None
    except Exception as e:  # whatever protobuf's parser raises: name the file
        raise AssetsError(path, None, f"not a t2r assets file (JSON or T2R pbtxt): {e}") from None


def _load_json_assets(text: str, path: Path) -> T2RAssets:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AssetsError(
            path, None, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}."
        ) from None
    except RecursionError:
        raise AssetsError(path, None, "JSON nested too deeply.") from None
    except ValueError as e:  # e.g. an integer with too many digits
        raise AssetsError(path, None, f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise AssetsError(path, None, f"must hold a JSON object, got {_json_type(data)}.")
    if data.get("format") != _FORMAT:
        raise AssetsError(
            path, "format", f"is not a t2r assets file (format {_short(data.get('format'))})."
        )
    format_version = _int_field(data, "format_version", path)
    if format_version > _FORMAT_VERSION:
        raise AssetsError(
            path,
            "format_version",
            f"assets format version {format_version}; this t2r ({t2r.__version__}) reads up "
            f"to {_FORMAT_VERSION}. Upgrade t2r.",
        )
    feature_spec = _specs_field(data.get("feature_spec"), "feature_spec", path, required=True)
    label_spec = _specs_field(data.get("label_spec"), "label_spec", path, required=False)
    metadata = data.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise AssetsError(path, "metadata", f"must be an object, got {_json_type(metadata)}.")
    return T2RAssets(
        feature_spec=feature_spec if feature_spec is not None else TensorSpecStruct(),
        label_spec=label_spec,
        global_step=_int_field(data, "global_step", path),
        metadata=metadata,
    )


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), f"a number ({_short(value)})")


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_field(data: dict[str, Any], field: str, path: Path) -> int:
    value = data.get(field, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise AssetsError(path, field, f"must be an integer, got {_json_type(value)}.")
    return value


# JSON types of the spec fields (`ExtendedTensorSpec.to_dict`); others are left to from_dict.
_SPEC_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "shape": (list, type(None)),
    "dtype": (str,),
    "name": (str, type(None)),
    "is_optional": (bool,),
    "is_sequence": (bool,),
    "is_extracted": (bool,),
    "data_format": (str, type(None)),
    "dataset_key": (str, type(None)),
    "varlen_default_value": (int, float, str, bool, dict, type(None)),  # dict: {"base64": ...}
    "minimum": (int, float, list, type(None)),
    "maximum": (int, float, list, type(None)),
}


def _specs_field(value: Any, field: str, path: Path, required: bool) -> TensorSpecStruct | None:
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise AssetsError(path, field, f"must be an object of specs, got {_json_type(value)}.")
    specs = []
    for key, spec in value.items():
        where = f"{field}[{key!r}]"
        if not isinstance(spec, dict):
            raise AssetsError(path, where, f"must be an object, got {_json_type(spec)}.")
        for name, value in spec.items():
            allowed = _SPEC_FIELD_TYPES.get(name)
            if allowed is not None and not (
                isinstance(value, allowed) and not (bool not in allowed and isinstance(value, bool))
            ):
                raise AssetsError(
                    path, f"{where}.{name}", f"has the wrong type: {_json_type(value)}."
                )
        try:
            specs.append((key, ExtendedTensorSpec.from_dict(spec)))
        except Exception as e:  # whatever the content: name the field
            raise AssetsError(path, where, f"is not a valid spec: {_short(str(e), 300)}") from None
    try:
        return TensorSpecStruct(specs)
    except Exception as e:  # e.g. keys that clash as paths
        raise AssetsError(path, field, f"is not a valid spec structure: {e}") from None


# --------------------------------------------------------------------------
# Tensor2Robot's t2r.proto, for reading t2r_assets.pbtxt.


def _build_t2r_proto_classes() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="t2r/compat/t2r.proto", package="t2r_compat", syntax="proto2"
    )
    F = descriptor_pb2.FieldDescriptorProto
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    spec = fdp.message_type.add(name="ExtendedTensorSpec")
    for number, name, ftype, label in [
        (1, "shape", F.TYPE_INT32, rep),
        (2, "dtype", F.TYPE_INT32, opt),
        (3, "name", F.TYPE_STRING, opt),
        (4, "is_optional", F.TYPE_BOOL, opt),
        (5, "is_extracted", F.TYPE_BOOL, opt),
        (6, "data_format", F.TYPE_STRING, opt),
        (7, "dataset_key", F.TYPE_STRING, opt),
        (8, "varlen_default_value", F.TYPE_FLOAT, opt),
    ]:
        spec.field.add(name=name, number=number, type=ftype, label=label)

    struct = fdp.message_type.add(name="TensorSpecStruct")
    entry = struct.nested_type.add(name="KeyValueEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(
        name="value",
        number=2,
        type=F.TYPE_MESSAGE,
        label=opt,
        type_name=".t2r_compat.ExtendedTensorSpec",
    )
    struct.field.add(
        name="key_value",
        number=1,
        type=F.TYPE_MESSAGE,
        label=rep,
        type_name=".t2r_compat.TensorSpecStruct.KeyValueEntry",
    )

    assets = fdp.message_type.add(name="T2RAssets")
    for number, name in [(1, "feature_spec"), (2, "label_spec")]:
        assets.field.add(
            name=name,
            number=number,
            type=F.TYPE_MESSAGE,
            label=opt,
            type_name=".t2r_compat.TensorSpecStruct",
        )
    assets.field.add(name="global_step", number=3, type=F.TYPE_INT32, label=opt)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t2r_compat.{name}"))
        for name in ("ExtendedTensorSpec", "TensorSpecStruct", "T2RAssets")
    }


_T2R_PROTO = _build_t2r_proto_classes()


_NAME_TO_TF_ENUM = {name: number for number, name in TF_ENUM_TO_NAME.items()}


def _spec_from_proto(key: str, proto: Any, path: Path) -> ExtendedTensorSpec:
    dtype = TF_ENUM_TO_NAME.get(proto.dtype)
    if dtype is None:
        raise SpecError(
            f"{path}: spec {key!r} (name {proto.name!r}) has unknown TF dtype enum "
            f"{proto.dtype}; t2r specs take {sorted(_NAME_TO_TF_ENUM.values())}.",
            key=key,
            name=proto.name or None,
        )
    # T2R wrote unknown dims as -1.
    shape = [None if d < 0 else d for d in proto.shape]
    kwargs: dict[str, Any] = {"shape": shape, "dtype": dtype}
    for field in (
        "name",
        "is_optional",
        "is_extracted",
        "data_format",
        "dataset_key",
        "varlen_default_value",
    ):
        if proto.HasField(field):
            kwargs[field] = getattr(proto, field)
    if dtype == "string" and "varlen_default_value" in kwargs:
        # T2R's proto holds a float default only; a string list pads with b"".
        kwargs["varlen_default_value"] = b""
    try:
        return ExtendedTensorSpec(**kwargs)
    except SpecError as e:
        raise SpecError(f"{path}: spec {key!r}: {e}", key=key, name=e.name) from e


def _load_pbtxt_assets(text: str, path: Path) -> T2RAssets:
    message = _T2R_PROTO["T2RAssets"]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise SpecError(f"{path}: not a t2r assets file (JSON or T2R pbtxt): {e}"[:500]) from e

    def struct(proto: Any) -> TensorSpecStruct:
        # T2R wrote map entries in no particular order; sort for a stable struct.
        return TensorSpecStruct(
            (key, _spec_from_proto(key, proto.key_value[key], path))
            for key in sorted(proto.key_value)
        )

    return T2RAssets(
        feature_spec=struct(message.feature_spec),
        label_spec=struct(message.label_spec) if message.HasField("label_spec") else None,
        global_step=message.global_step,
    )


def _spec_to_proto(key: str, spec: ExtendedTensorSpec, proto: Any) -> None:
    if spec.shape is None:
        raise SpecError(
            f"Spec {key!r} (name {spec.name!r}) has unknown rank, which T2R's pbtxt cannot hold.",
            key=key,
            name=spec.name,
        )
    default = spec.varlen_default_value
    if isinstance(default, bytes) and default:
        raise SpecError(
            f"Spec {key!r} (name {spec.name!r}): T2R's pbtxt holds float varlen defaults only, "
            f"not {default!r} (b'' is written as 0.0 and read back as b'').",
            key=key,
            name=spec.name,
        )
    proto.shape.extend(-1 if d is None else d for d in spec.shape)
    proto.dtype = _NAME_TO_TF_ENUM[dtype_name(spec.dtype)]
    if spec.name is not None:
        proto.name = spec.name
    proto.is_optional = spec.is_optional
    proto.is_extracted = spec.is_extracted
    if spec.data_format is not None:
        proto.data_format = spec.data_format
    if spec.dataset_key:
        proto.dataset_key = spec.dataset_key
    if default is not None:
        proto.varlen_default_value = 0.0 if isinstance(default, bytes) else float(default)


def t2r_assets_to_pbtxt(t2r_assets: T2RAssets) -> str:
    """The assets in Tensor2Robot's ``t2r_assets.pbtxt`` text format.

    T2R's proto has fewer fields than t2r's specs: ``is_sequence`` and the
    metadata are dropped, unknown dims are written as -1, a string spec's
    varlen default (only ``b''`` fits) as 0.0. `load_t2r_assets_to_file` reads
    the text back. String specs are written as ``DT_STRING`` (7), as T2R did.

    Raises:
      SpecError: a spec that T2R's proto cannot hold (unknown rank, a non-empty
        bytes varlen default).
    """
    message = _T2R_PROTO["T2RAssets"]()
    parts = [("feature_spec", t2r_assets.feature_spec)]
    if t2r_assets.label_spec is not None:
        parts.append(("label_spec", t2r_assets.label_spec))
    for field, structure in parts:
        target = getattr(message, field)
        target.SetInParent()
        for key, spec in flatten_spec_structure(structure).items():
            if not isinstance(spec, ExtendedTensorSpec):
                raise SpecError(
                    f"{field} entry {key!r} must be a spec, got {type(spec).__name__}.", key=key
                )
            _spec_to_proto(key, spec, target.key_value[key])
    message.global_step = int(t2r_assets.global_step)
    text: str = text_format.MessageToString(message)
    return text
