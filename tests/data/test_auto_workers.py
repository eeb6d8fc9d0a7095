"""The worker count a record generator chooses when not told, and what it must keep.

The suite pins ``T2R_NUM_WORKERS=0`` (tests/conftest.py); these tests unset it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from t2r.data import SourceInputGenerator, input_generators
from t2r.data.input_generators import NUM_WORKERS_ENV, auto_num_workers, available_cpus
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import TensorSpecStruct

from .test_input_generators import generator, write_shards
from .test_sources import in_memory


@pytest.fixture
def cpus(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Unpins the suite's T2R_NUM_WORKERS; ``cpus(n)`` makes the machine look n-CPU."""
    monkeypatch.delenv(NUM_WORKERS_ENV, raising=False)

    def set_cpus(count: int) -> None:
        monkeypatch.setattr(input_generators, "available_cpus", lambda: count)

    return set_cpus


def stream_ids(batches: Any, count: int) -> list[int]:
    return [i for f, _ in itertools.islice(batches, count) for i in f["id"].tolist()]


@pytest.mark.parametrize(
    ("cpus", "batch_size", "expected"),
    [
        (1, 64, 0),  # one CPU: parse in the training process
        (2, 64, 2),  # small machines: one worker per CPU
        (4, 64, 4),
        (8, 64, 7),  # larger: one CPU left to the training process
        (64, 64, 8),  # capped
        (2, 1, 1),  # tiny batches: receiving sets the pace
        (8, 8, 2),
        (8, 12, 3),
    ],
)
def test_auto_num_workers_rule(cpus: int, batch_size: int, expected: int) -> None:
    assert auto_num_workers(batch_size, cpus) == expected


def test_available_cpus_reads_the_affinity_and_a_cgroup_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(input_generators.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(input_generators, "_CGROUP_CPU_MAX", str(cpu_max))
    assert available_cpus() == 4  # no cgroup file
    cpu_max.write_text("max 100000\n")
    assert available_cpus() == 4
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs of quota: 2 may run at once
    assert available_cpus() == 2
    cpu_max.write_text("20000 100000\n")
    assert available_cpus() == 1


def test_the_count_is_chosen_given_first_then_resumed_then_env_then_auto(
    tmp_path: Path, cpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pattern = write_shards(tmp_path, num_files=2, per_file=4)  # ID_SPEC has a PNG image
    cpus(4)
    gen = generator(pattern, batch_size=16)
    parse_fn = gen._make_parse_fn(gen._sources(ModeKeys.TRAIN))
    assert gen.resolve_num_workers(parse_fn) == (4, "auto: 4 CPUs, batch 16")
    monkeypatch.setenv(NUM_WORKERS_ENV, "1")
    assert gen.resolve_num_workers(parse_fn) == (1, f"{NUM_WORKERS_ENV}=1")
    gen.set_default_num_workers(3)
    assert gen.resolve_num_workers(parse_fn) == (3, "as the run being resumed")
    assert generator(pattern, num_workers=0).resolve_num_workers(parse_fn) == (0, "given")
    monkeypatch.setenv(NUM_WORKERS_ENV, "auto")
    assert generator(pattern, batch_size=16).resolve_num_workers(parse_fn)[0] == 4
    monkeypatch.setenv(NUM_WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=f"{NUM_WORKERS_ENV}='many'"):
        generator(pattern).resolve_num_workers(parse_fn)


def test_nothing_to_decode_means_no_workers(tmp_path: Path, cpus: Any) -> None:
    cpus(8)
    pattern = write_shards(tmp_path, num_files=2, per_file=4)
    numbers = TensorSpecStruct([("id", TSpec((), torch.int64, "id"))])
    gen = generator(pattern, batch_size=16)
    gen.set_feature_specifications(numbers)
    assert gen.create_dataset(ModeKeys.TRAIN).dataloader.num_workers == 0
    undecoded = generator(pattern, batch_size=16, decode_images=False)
    assert undecoded.create_dataset(ModeKeys.TRAIN).dataloader.num_workers == 0
    # Sources with a parse fn of their own (arrays in memory) stay in-process.
    source = SourceInputGenerator(in_memory(), 16)
    source.set_feature_specifications(*_in_memory_specs())
    assert source.create_dataset(ModeKeys.TRAIN).dataloader.num_workers == 0


def _in_memory_specs() -> tuple[Any, Any]:
    from .test_sources import LABELS, SPEC

    return SPEC, LABELS


def test_auto_workers_give_the_batches_of_that_explicit_count(tmp_path: Path, cpus: Any) -> None:
    pattern = write_shards(tmp_path, num_files=5, per_file=6)
    cpus(2)
    auto = generator(pattern, batch_size=8, seed=3, shuffle_buffer_size=5, cycle_length=2)
    dataset = auto.create_dataset(ModeKeys.TRAIN)
    assert dataset.dataloader.num_workers == 2
    explicit = generator(
        pattern, batch_size=8, seed=3, shuffle_buffer_size=5, cycle_length=2, num_workers=2
    )
    expected = stream_ids(explicit.create_dataset(ModeKeys.TRAIN), 12)
    assert stream_ids(dataset, 12) == expected
    # The same generator on a one-CPU machine parses in-process: another order,
    # which is why a resumed run reuses the count it started with.
    cpus(1)
    assert auto.create_dataset(ModeKeys.TRAIN).dataloader.num_workers == 0
    auto.set_default_num_workers(2)
    assert stream_ids(auto.create_dataset(ModeKeys.TRAIN), 12) == expected


@pytest.mark.parametrize("position", [1, 6])
def test_auto_workers_resume_exactly(tmp_path: Path, cpus: Any, position: int) -> None:
    pattern = write_shards(tmp_path, num_files=3, per_file=7)
    cpus(2)

    def make() -> Any:
        return generator(pattern, batch_size=8, seed=5, shuffle_buffer_size=4, cycle_length=2)

    full = stream_ids(make().create_dataset(ModeKeys.TRAIN), position + 5)
    dataset = make().create_dataset(ModeKeys.TRAIN)
    assert dataset.dataloader.num_workers == 2
    assert stream_ids(dataset.iter_from(position), 5) == full[position * 8 :]
