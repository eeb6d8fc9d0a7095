"""Fuzzed record files through the input pipeline: crashes, hangs, silent corruptions.

Each fuzzed file starts as a valid TFRecord file of Examples (an id, a JPEG, a
16-bit PNG, floats, small integers) and is damaged in one of two ways:

* ``frame``: bytes of the file are flipped, overwritten, inserted, deleted,
  duplicated or cut off. The record CRCs should catch all of it, so a record
  that is returned must be exactly one of the originals (anything else is a
  *silent corruption*).
* ``content``: the serialized Example of one record is damaged and framed again
  with valid CRCs (a buggy or hostile writer). The parser sees the garbage; a
  value may legitimately change (a flipped float byte), so only crashes and
  error messages are judged.
* ``semantic``: one feature of one record is well-formed but wrong: an integer
  out of its dtype's range, an image header claiming another size, 8-bit data
  for a 16-bit spec, another value kind or count, a missing feature, a
  truncated or 1-channel image. Judged as ``content``.

Every file is read with a strict `DefaultRecordInputGenerator`. An outcome is
``ok`` (read without error), ``error`` (a `DataError` naming the file and the
byte offset of the record), ``bad_error`` (a `DataError` that does not), a
``crash`` (any other exception), a ``hang`` (no answer within the alarm) or a
``silent`` corruption.
"""

from __future__ import annotations

import collections
import contextlib
import random
import signal
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from t2r.data import (
    DataError,
    DefaultRecordInputGenerator,
    Example,
    create_parse_tf_example_fn,
    create_serialize_tf_example_fn,
    encode_image,
)
from t2r.data.tfrecord import masked_crc32c
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec as TSpec
from t2r.specs import TensorSpecStruct

SPEC = TensorSpecStruct(
    [
        ("id", TSpec((), torch.int64, "id")),
        ("image", TSpec((16, 16, 3), torch.uint8, "image", data_format="jpeg")),
        ("depth", TSpec((8, 8, 1), torch.uint16, "depth", data_format="png")),
        ("pose", TSpec((3,), torch.float32, "pose")),
        ("flags", TSpec((4,), torch.uint8, "flags")),
    ]
)
RECORDS_PER_FILE = 6
OUTCOMES = ("ok", "error", "bad_error", "crash", "hang", "silent")
HANG_SECONDS = 60


def _example(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    return {
        "id": np.array(i, np.int64),
        "image": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
        "depth": rng.integers(0, 65535, (8, 8, 1), dtype=np.uint16),
        "pose": rng.standard_normal(3).astype(np.float32),
        "flags": rng.integers(0, 255, 4, dtype=np.uint8),
    }


def _frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + record
        + struct.pack("<I", masked_crc32c(record))
    )


def _damage(data: bytes, rng: random.Random) -> bytes:
    """One or more random byte-level edits."""
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4])):
        how = rng.choice(["flip", "byte", "insert", "delete", "duplicate", "truncate", "zero"])
        at = rng.randrange(len(out)) if out else 0
        if how == "flip" and out:
            out[at] ^= 1 << rng.randrange(8)
        elif how == "byte" and out:
            out[at] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif how == "insert":
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif how == "delete":
            del out[at : at + rng.randrange(1, 9)]
        elif how == "duplicate":
            size = rng.randrange(1, 33)
            out[at:at] = out[at : at + size]
        elif how == "truncate":
            del out[at:]
        elif how == "zero":
            out[at : at + rng.randrange(1, 17)] = bytes(len(out[at : at + 16]))
    return bytes(out)


@dataclass
class FuzzCorpus:
    """Original records of every id, and their parsed values."""

    records: list[bytes]
    values: list[dict[str, np.ndarray]]

    @classmethod
    def make(cls, count: int) -> FuzzCorpus:
        serialize = create_serialize_tf_example_fn(SPEC)
        records = [serialize(_example(i)) for i in range(count)]
        parsed = create_parse_tf_example_fn(SPEC)(records)  # as decoded (lossy JPEG)
        values = [{k: np.asarray(v[i]) for k, v in parsed.items()} for i in range(count)]
        return cls(records, values)  # type: ignore[arg-type]


def _hostile(record: bytes, rng: random.Random) -> bytes:
    """The record with one feature replaced by a well-formed but wrong value."""
    example = Example.FromString(record)
    features = example.features.feature
    how = rng.choice(
        ["int_range", "header", "png8", "kind", "count", "missing", "image_bytes", "channels"]
    )
    if how == "int_range":
        values = features["flags"].int64_list.value
        values[rng.randrange(4)] = rng.choice([256, -1, 2**40, -(2**63)])
    elif how == "header":  # a JPEG whose header claims another (large) size
        data = bytearray(features["image"].bytes_list.value[0])
        sof = data.find(b"\xff\xc0")
        struct.pack_into(">HH", data, sof + 5, rng.choice([4000, 17, 1]), rng.choice([4000, 16]))
        features["image"].bytes_list.value[0] = bytes(data)
    elif how == "png8":  # 8-bit depth for a uint16 spec
        features["depth"].bytes_list.value[0] = encode_image(np.zeros((8, 8, 1), np.uint8), "png")
    elif how == "kind":
        features["pose"].ClearField("float_list")
        features["pose"].int64_list.value.extend([1, 2, 3])
    elif how == "count":
        features["pose"].float_list.value.append(1.0)
    elif how == "missing":
        del features[rng.choice(["id", "image", "pose"])]
    elif how == "image_bytes":
        data = features["image"].bytes_list.value[0]
        features["image"].bytes_list.value[0] = data[: rng.randrange(len(data))]
    else:
        features["image"].bytes_list.value[0] = encode_image(
            np.zeros((16, 16, 1), np.uint8), rng.choice(["jpeg", "png"])
        )
    return example.SerializeToString()


def write_fuzzed(path: Path, corpus: FuzzCorpus, seed: int) -> str:
    """Writes one fuzzed file; returns its kind (``frame``, ``content`` or ``semantic``)."""
    rng = random.Random(seed)
    ids = rng.sample(range(len(corpus.records)), RECORDS_PER_FILE)
    records = [corpus.records[i] for i in ids]
    if seed % 3:
        victim = rng.randrange(len(records))
        damage = _damage if seed % 3 == 1 else _hostile
        records[victim] = damage(records[victim], rng)
        path.write_bytes(b"".join(_frame(r) for r in records))
        return "content" if seed % 3 == 1 else "semantic"
    path.write_bytes(_damage(b"".join(_frame(r) for r in records), rng))
    return "frame"


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class FuzzResult:
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)  # outcome -> one description

    def add(self, outcome: str, kind: str, description: str) -> None:
        self.counts[outcome] += 1
        self.kinds[f"{kind}/{outcome}"] += 1
        self.examples.setdefault(outcome, description)

    @property
    def failures(self) -> int:
        return sum(self.counts[k] for k in ("bad_error", "crash", "hang", "silent"))


def read_one(path: Path, corpus: FuzzCorpus, kind: str) -> tuple[str, str]:
    """``(outcome, description)`` of reading one fuzzed file strictly."""
    generator = DefaultRecordInputGenerator(str(path), batch_size=2)
    generator.set_feature_specifications(SPEC)
    try:
        with _alarm(HANG_SECONDS):
            batches = list(generator.create_dataset(ModeKeys.EVAL))
    except TimeoutError:
        return "hang", str(path)
    except DataError as e:
        message = str(e)
        if str(path) in message and "byte" in message:
            return "error", message
        return "bad_error", message
    except Exception as e:  # anything else is a crash
        return "crash", f"{path}: {type(e).__name__}: {e}"
    if kind != "frame":
        return "ok", str(path)
    for features, _ in batches:
        for row in range(len(features["id"])):
            i = int(features["id"][row])
            if not 0 <= i < len(corpus.values):
                return "silent", f"{path}: unknown id {i}"
            for key, expected in corpus.values[i].items():
                if not np.array_equal(np.asarray(features[key][row]), expected):
                    return "silent", f"{path}: record {i} {key} differs"
    return "ok", str(path)


def fuzz(root: Path, count: int, seed: int = 0) -> FuzzResult:
    """Writes and reads `count` fuzzed files under `root`."""
    corpus = FuzzCorpus.make(32)
    result = FuzzResult()
    for n in range(count):
        path = root / f"fuzz-{seed}-{n:05d}.tfrecord"
        kind = write_fuzzed(path, corpus, seed * 1_000_003 + n)
        outcome, description = read_one(path, corpus, kind)
        result.add(outcome, kind, description)
        path.unlink()
    return result
