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


def test_write_safetensors_handles_shared_memory(tmp_path):
    import torch
    from safetensors.torch import load_file

    from t2r.atomic import write_safetensors

    weight = torch.arange(6.0).reshape(2, 3)
    write_safetensors(tmp_path / "w.safetensors", {"a": weight, "tied": weight, "view": weight[0]})
    loaded = load_file(str(tmp_path / "w.safetensors"))
    assert torch.equal(loaded["tied"], weight) and torch.equal(loaded["view"], weight[0])
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_atomic_directory_publishes_replaces_and_cleans_up(tmp_path):
    from t2r.atomic import atomic_directory

    final = tmp_path / "ckpt"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("1")
        assert not final.exists()
    assert (final / "a").read_text() == "1"
    with atomic_directory(final) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "c").write_text("3")
        raise RuntimeError("crash")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert os.listdir(tmp_path) == ["ckpt"]
