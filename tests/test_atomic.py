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


def test_atomic_file_publishes_what_the_block_wrote_or_nothing(tmp_path):
    from t2r.atomic import atomic_file

    path = tmp_path / "data.h5"
    with atomic_file(path) as tmp:
        assert is_temporary_path(tmp) and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:  # any library writing a file by name
            f.write(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError, match="writer failed"), atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("writer failed")
    assert path.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["data.h5"]


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


_KILL_SCRIPT = """
import os, shutil, signal, sys
from pathlib import Path
import t2r.atomic as atomic

final, point = Path(sys.argv[1]), sys.argv[2]

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "before_swap":
    atomic._swap = die
elif point == "after_swap":  # the old directory is about to be removed
    atomic.shutil.rmtree = die
with atomic.atomic_directory(final) as tmp:
    for name in ("a", "b", "c"):
        (tmp / name).write_text("new")
    if point == "while_filling":
        die()
"""


@pytest.mark.parametrize("point", ["while_filling", "before_swap", "after_swap", "none"])
def test_sigkill_at_any_step_of_a_replace_leaves_a_complete_directory(tmp_path, point):
    import signal
    import subprocess
    import sys

    from t2r.atomic import is_temporary_path, swap_paths

    if not swap_paths(tmp_path, tmp_path):
        pytest.skip("no atomic directory exchange on this filesystem")
    final = tmp_path / "7"
    final.mkdir()
    for name in ("a", "b", "c"):
        (final / name).write_text("old")
    done = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(final), point], check=False)
    assert done.returncode == (0 if point == "none" else -signal.SIGKILL)
    contents = {p.read_text() for p in final.iterdir()}
    assert sorted(p.name for p in final.iterdir()) == ["a", "b", "c"]  # complete
    expected = "new" if point in ("after_swap", "none") else "old"
    assert contents == {expected}
    leftovers = [p for p in tmp_path.iterdir() if p != final]
    assert all(is_temporary_path(p) for p in leftovers)  # readers skip them


def test_replace_without_an_atomic_exchange_still_replaces(tmp_path, monkeypatch):
    import t2r.atomic
    from t2r.atomic import atomic_directory

    monkeypatch.setattr(t2r.atomic, "_swap", None)
    final = tmp_path / "v"
    for text in ("1", "2"):
        with atomic_directory(final) as tmp:
            (tmp / "x").write_text(text)
    assert (final / "x").read_text() == "2" and os.listdir(tmp_path) == ["v"]
