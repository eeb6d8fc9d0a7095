from __future__ import annotations

import os

import pytest

from t2r.atomic import atomic_write_bytes, atomic_write_text, is_temporary_path, temporary_path_for


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "f.json"
    atomic_write_text(path, "one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]


def test_temporary_names_are_recognized():
    tmp = temporary_path_for("/d/ckpt-10.safetensors")
    assert os.path.dirname(tmp) == "/d"
    assert is_temporary_path(tmp)
    assert not is_temporary_path("/d/ckpt-10.safetensors")
    assert not is_temporary_path("/d/.hidden")
