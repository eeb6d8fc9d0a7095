"""Loading a tampered export never runs its payload; it fails naming the file.

Each test plants a payload that creates a marker file when it runs, checks
that plain ``torch.export.load`` does run it (so the test can fail), and that
t2r's loaders refuse the file without running it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.export import (
    ExportError,
    UnsafeExportError,
    export_saved_model,
    load_export,
    read_identity,
)
from t2r.export.layout import file_record
from t2r.export.pt2 import check_shape_expression
from t2r.predictors import ExportedModelPredictor
from t2r.specs import AssetsError

from .models import TinyModel

X = np.ones((2, 3), np.float32)


class _Payload:
    """Unpickling it creates `marker`: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rewrite_archive(path: Path, edit: Callable[[str, bytes], bytes | None], add=None) -> None:
    """Rewrites the zip at `path`: `edit(entry, data)` returns new data (None drops it).

    The assets' record of the file is updated too, as an attacker would.
    """
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    root = source.namelist()[0].split("/", 1)[0]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for info in source.infolist():
            data = edit(info.filename.split("/", 1)[1], source.read(info.filename))
            if data is not None:
                archive.writestr(info, data)
        for name, data in (add or {}).items():
            archive.writestr(f"{root}/{name}", data)
    path.write_bytes(out.getvalue())
    assets_path = path.parent / "t2r_assets.json"
    assets = json.loads(assets_path.read_text())
    assets["metadata"]["files"][path.name] = file_record(out.getvalue())
    assets_path.write_text(json.dumps(assets))


def _export(tmp_path: Path, step: int = 1) -> Path:
    torch.manual_seed(0)
    return export_saved_model(TinyModel(), tmp_path / "export", global_step=step)


def _plant_pickled_weight(version: Path, marker: Path) -> None:
    def edit(entry: str, data: bytes) -> bytes:
        if entry == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if entry == "data/weights/weight_0":
            return pickle.dumps(_Payload(marker))
        return data

    _rewrite_archive(version / "model.pt2", edit)


def _plant_pickled_sample_inputs(version: Path, marker: Path, raw: bool = True) -> None:
    if raw:
        payload = pickle.dumps(_Payload(marker))
    else:  # a well-formed torch.save archive whose data.pkl calls open()
        buffer = io.BytesIO()
        torch.save(_Payload(marker), buffer)
        payload = buffer.getvalue()

    def edit(entry: str, data: bytes) -> bytes:
        return payload if entry.startswith("data/sample_inputs/") else data

    _rewrite_archive(version / "model.pt2", edit)


def _plant_shape_expression(version: Path, marker: Path) -> None:
    def edit(entry: str, data: bytes) -> bytes:
        if entry != "models/model.json":
            return data
        text = data.decode()
        symbol = text[text.index("Symbol(") :].split(")", 1)[0] + ")"
        evil = f"open({str(marker)!r}, 'w') and {symbol}"
        return text.replace(json.dumps(symbol)[1:-1], json.dumps(evil)[1:-1], 1).encode()

    _rewrite_archive(version / "model.pt2", edit)


def _torch_runs_it(path: Path) -> None:
    try:
        torch.export.load(str(path))
    except Exception:  # the payload has run by then, or not: the caller checks the marker
        pass


@pytest.mark.parametrize(
    "plant",
    [_plant_pickled_weight, _plant_shape_expression],
    ids=["pickled-weight", "sympy-expression"],
)
def test_tampered_program_is_refused_and_its_payload_never_runs(tmp_path, plant):
    version = _export(tmp_path)
    marker = tmp_path / "payload-ran"
    plant(version, marker)
    _torch_runs_it(version / "model.pt2")
    assert marker.exists(), "plain torch.export.load runs this payload"
    marker.unlink()

    with pytest.raises(UnsafeExportError, match=r"model\.pt2: refused to load") as raised:
        load_export(version)
    assert raised.value.path == str(version / "model.pt2")
    predictor = ExportedModelPredictor(version.parent, timeout=0)
    assert not predictor.restore()  # the only version is refused, not served
    assert not marker.exists()


@pytest.mark.parametrize("raw", [True, False], ids=["raw-pickle", "torch-save"])
def test_pickled_sample_inputs_are_refused_without_unpickling(tmp_path, raw):
    version = _export(tmp_path)
    marker = tmp_path / "payload-ran"
    _plant_pickled_sample_inputs(version, marker, raw)
    _torch_runs_it(version / "model.pt2")
    assert marker.exists(), "plain torch.export.load falls back to an unsafe unpickle"
    marker.unlink()

    what = "a raw pickle" if raw else "a pickle that calls io.open"
    with pytest.raises(UnsafeExportError, match=f"data/sample_inputs/model.pt holds {what}"):
        load_export(version)
    assert not marker.exists()


def test_clean_sample_inputs_pass_the_scan(tmp_path):
    from t2r.export.pt2 import pickle_globals_problem

    buffer = io.BytesIO()
    torch.save(((torch.zeros(2, 3), torch.ones(1, dtype=torch.uint8)), {}), buffer)
    inner = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    pickled = next(n for n in inner.namelist() if n.endswith("/data.pkl"))
    assert pickle_globals_problem(inner.read(pickled)) is None
    assert "calls io.open" in (pickle_globals_problem(pickle.dumps(_Payload(tmp_path), 2)) or "")
    assert "STACK_GLOBAL" in (pickle_globals_problem(pickle.dumps(_Payload(tmp_path), 4)) or "")


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ("data/aotinductor/model/model.so", "compiled code"),
        ("data/weights/model.pt", "pickled legacy"),
    ],
)
def test_entries_that_load_code_or_pickles_are_refused(tmp_path, entry, what):
    version = _export(tmp_path)
    _rewrite_archive(version / "model.pt2", lambda _, data: data, add={entry: b"\x7fELF"})
    with pytest.raises(UnsafeExportError, match=f"{entry}.*{what}"):
        load_export(version)


def test_pickled_constants_are_refused(tmp_path):
    version = _export(tmp_path)

    def edit(entry: str, data: bytes) -> bytes:
        if entry == "data/constants/model_constants_config.json":
            meta = {"path_name": "custom_obj_0", "is_param": False, "use_pickle": False}
            return json.dumps({"config": {"obj": {**meta, "tensor_meta": None}}}).encode()
        return data

    _rewrite_archive(version / "model.pt2", edit, add={"data/constants/custom_obj_0": b"x"})
    with pytest.raises(UnsafeExportError, match="pickled object"):
        load_export(version)


def test_a_predictor_skips_a_tampered_newest_version(tmp_path):
    _export(tmp_path, step=1)
    newest = _export(tmp_path, step=2)
    marker = tmp_path / "payload-ran"
    _plant_pickled_weight(newest, marker)
    predictor = ExportedModelPredictor(newest.parent, timeout=0)
    assert predictor.restore()
    assert predictor.model_version == 1
    assert predictor.predict({"x": X})["inference_output"].shape == (2, 2)
    assert not marker.exists()


def test_a_damaged_or_mixed_program_fails_naming_the_file(tmp_path):
    version = _export(tmp_path)
    data = (version / "model.pt2").read_bytes()
    (version / "model.pt2").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ExportError, match=r"model\.pt2: does not match the SHA-256"):
        load_export(version)
    (version / "model.pt2").write_bytes(b"not a zip")
    assets = json.loads((version / "t2r_assets.json").read_text())
    del assets["metadata"]["files"]  # an export without digests: the archive itself is checked
    (version / "t2r_assets.json").write_text(json.dumps(assets))
    with pytest.raises(ExportError, match=r"model\.pt2: is not a torch\.export archive"):
        load_export(version)


def test_program_paths_stay_inside_the_version_directory(tmp_path):
    version = _export(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.pt2").write_bytes((version / "model.pt2").read_bytes())
    assets_path = version / "t2r_assets.json"
    assets = json.loads(assets_path.read_text())
    for field, bad in [
        ("program_file", "../../outside/model.pt2"),
        ("program_file", str(outside / "model.pt2")),
        ("program_file", ".."),
        ("onnx_file", "../model.onnx"),
        ("weights_file", "sub/model.safetensors"),
    ]:
        edited = json.loads(json.dumps(assets))
        edited["metadata"][field] = bad
        assets_path.write_text(json.dumps(edited))
        with pytest.raises(AssetsError, match=rf"t2r_assets\.json, field metadata\.{field}"):
            load_export(version)
    assets_path.write_text(json.dumps(assets))
    (version / "model.pt2").unlink()
    (version / "model.pt2").symlink_to(outside / "model.pt2")
    with pytest.raises(ExportError, match=r"model\.pt2: is a symbolic link"):
        load_export(version)


def test_shape_expressions_must_be_plain_sympy():
    assert check_shape_expression("Symbol('s29', positive=True, integer=True)") is None
    assert check_shape_expression("Mul(Integer(2), Symbol('s0', integer=True))") is None
    assert check_shape_expression("FloorDiv(s0, 2) + Max(1, s1) <= 10") is None
    for evil in [
        "__import__('os').system('true')",
        "Symbol('s0').__class__",
        "Symbol(f'{open(1)}')",
        "[x for x in ()]",
        "lambda: 0",
        "Symbol('s0'); open('x')",
        "eval('1')",
        "9" * 100,
    ]:
        assert check_shape_expression(evil) is not None, evil


def test_identity_tells_two_writes_of_a_version_apart(tmp_path):
    version = _export(tmp_path)
    first = read_identity(version)
    assert first is not None and load_export(version).identity == first
    again = _export(tmp_path)
    assert again == version and read_identity(version) not in (None, first)
    assert read_identity(tmp_path / "missing") is None
    assert os.listdir(version.parent) == [version.name]
