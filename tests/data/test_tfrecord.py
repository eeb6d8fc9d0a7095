from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2r.atomic import temporary_path_for
from t2r.data import (
    DataError,
    ReadStats,
    TFRecordWriter,
    expand_file_patterns,
    is_temporary_path,
    read_tfrecord,
    read_tfrecord_with_offsets,
)
from t2r.data.tfrecord import masked_crc32c

RECORDS = [b"first", b"", b"x" * 1000, b"\x00\xff" * 7, b"last"]


def offsets_of(records: list[bytes]) -> list[int]:
    offsets, position = [], 0
    for record in records:
        offsets.append(position)
        position += 16 + len(record)
    return offsets


def write(path: Path, records: list[bytes], compression: str | None = None) -> Path:
    with TFRecordWriter(path, compression=compression) as writer:  # type: ignore[arg-type]
        for record in records:
            writer.write(record)
    return path


def test_masked_crc32c_known_value() -> None:
    # crc32c(b"") == 0, so the masked value is the mask delta itself.
    assert masked_crc32c(b"") == 0xA282EAD8


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_round_trip(tmp_path: Path, compression: str | None) -> None:
    path = write(tmp_path / "a.tfrecord", RECORDS, compression)
    assert list(read_tfrecord(path, compression=compression)) == RECORDS  # type: ignore[arg-type]
    assert list(read_tfrecord(path, compression="auto")) == RECORDS
    offsets = [o for o, _ in read_tfrecord_with_offsets(path, compression="auto")]
    assert offsets == offsets_of(RECORDS)


def test_plain_framing_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", [b"abc"])
    raw = path.read_bytes()
    assert raw[:8] == (3).to_bytes(8, "little")
    assert raw[8:12] == masked_crc32c(raw[:8]).to_bytes(4, "little")
    assert raw[12:15] == b"abc"
    assert raw[15:] == masked_crc32c(b"abc").to_bytes(4, "little")


def test_gzip_file_is_a_gzip_stream_of_the_plain_framing(tmp_path: Path) -> None:
    plain = write(tmp_path / "plain.tfrecord", RECORDS)
    zipped = write(tmp_path / "zipped.tfrecord.gz", RECORDS, "GZIP")
    assert gzip.decompress(zipped.read_bytes()) == plain.read_bytes()


def test_writer_accepts_bytes_like_and_rejects_others(tmp_path: Path) -> None:
    path = tmp_path / "a.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write(bytearray(b"ab"))
        writer.write(memoryview(b"cd"))
        with pytest.raises(TypeError):
            writer.write("text")  # type: ignore[arg-type]
        assert writer.num_records == 2
    assert list(read_tfrecord(path)) == [b"ab", b"cd"]
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"late")


def test_unknown_compression_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ZLIB"):
        TFRecordWriter(tmp_path / "a", compression="ZLIB")  # type: ignore[arg-type]


def test_write_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "shard.tfrecord"
    other = write(tmp_path / "other.tfrecord", [b"o"])
    with TFRecordWriter(path) as writer:
        writer.write(b"partial")
        writer.flush()
        assert not path.exists()
        temporary = [name for name in os.listdir(tmp_path) if name != other.name]
        assert len(temporary) == 1 and is_temporary_path(temporary[0])
        assert temporary[0].startswith(".shard.tfrecord.tmp-")
        # Readers skip the temporary file, even with a pattern that matches it.
        assert expand_file_patterns(str(tmp_path / "*")) == [str(other)]
        with pytest.raises(ValueError, match=r"\.shard\*"):
            expand_file_patterns(str(tmp_path / ".shard*"))
    assert sorted(os.listdir(tmp_path)) == ["other.tfrecord", "shard.tfrecord"]
    assert list(read_tfrecord(path)) == [b"partial"]


def test_rewrite_replaces_old_file_only_on_close(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", [b"old"])
    with TFRecordWriter(path) as writer:
        writer.write(b"new")
        assert list(read_tfrecord(path)) == [b"old"]
    assert list(read_tfrecord(path)) == [b"new"]


def test_exception_in_with_block_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.tfrecord"
    with pytest.raises(RuntimeError, match="boom"), TFRecordWriter(path) as writer:
        writer.write(b"record")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_is_temporary_path() -> None:
    assert is_temporary_path(temporary_path_for("/d/train.tfrecord"))
    assert os.path.dirname(temporary_path_for("/d/train.tfrecord")) == "/d"
    assert not is_temporary_path("/d/train.tfrecord")
    assert not is_temporary_path("/d/.hidden")


def test_flipped_data_byte_names_file_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", RECORDS)
    raw = bytearray(path.read_bytes())
    bad_offset = offsets_of(RECORDS)[2]
    raw[bad_offset + 12 + 500] ^= 0x01
    path.write_bytes(bytes(raw))
    reader = read_tfrecord(path)
    assert next(reader) == RECORDS[0]
    assert next(reader) == RECORDS[1]
    with pytest.raises(DataError) as info:
        next(reader)
    message = str(info.value)
    assert str(path) in message
    assert f"record at byte {bad_offset}:" in message
    assert "data crc mismatch" in message
    # Without crc checks the corrupt record comes back as stored.
    assert list(read_tfrecord(path, verify_crc=False))[2] == bytes(raw[bad_offset + 12 :][:1000])


def test_flipped_length_byte_names_file_and_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", RECORDS)
    raw = bytearray(path.read_bytes())
    bad_offset = offsets_of(RECORDS)[3]
    raw[bad_offset] ^= 0x04
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=f"record at byte {bad_offset}: length crc mismatch") as e:
        list(read_tfrecord(path))
    assert str(path) in str(e.value)


@pytest.mark.parametrize("cut", [5, 12, 20])  # inside the header, at the data, inside the data
def test_truncated_file_names_file_and_offset(tmp_path: Path, cut: int) -> None:
    path = write(tmp_path / "a.tfrecord", RECORDS)
    last = offsets_of(RECORDS)[2]
    path.write_bytes(path.read_bytes()[: last + cut])
    with pytest.raises(DataError, match=f"record at byte {last}: truncated") as e:
        list(read_tfrecord(path))
    assert str(path) in str(e.value)


def test_truncated_gzip_file_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord.gz", [os.urandom(2000) for _ in range(5)], "GZIP")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="uncompressed stream") as e:
        list(read_tfrecord(path, compression="GZIP"))
    assert str(path) in str(e.value)


def test_skip_corrupt_skips_bad_records_and_counts_them(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", RECORDS)
    raw = bytearray(path.read_bytes())
    for index in (0, 3):
        raw[offsets_of(RECORDS)[index] + 12] ^= 0xFF
    path.write_bytes(bytes(raw))
    stats = ReadStats()
    got = list(read_tfrecord(path, skip_corrupt=True, stats=stats))
    assert got == [RECORDS[1], RECORDS[2], RECORDS[4]]
    assert stats == ReadStats(records=3, corrupt_records=2, truncated_files=0)


def test_skip_corrupt_ends_file_at_bad_length_or_truncation(tmp_path: Path) -> None:
    bad_length = write(tmp_path / "a.tfrecord", RECORDS)
    raw = bytearray(bad_length.read_bytes())
    raw[offsets_of(RECORDS)[2] + 1] ^= 0x10
    bad_length.write_bytes(bytes(raw))
    truncated = write(tmp_path / "b.tfrecord", RECORDS)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    stats = ReadStats()
    got = list(read_tfrecord(bad_length, skip_corrupt=True, stats=stats))
    got += list(read_tfrecord(truncated, skip_corrupt=True, stats=stats))
    assert got == RECORDS[:2] + RECORDS[:-1]
    assert stats == ReadStats(records=6, corrupt_records=0, truncated_files=2)


def test_auto_compression_reads_both(tmp_path: Path) -> None:
    write(tmp_path / "a.tfrecord", RECORDS[:2])
    write(tmp_path / "b.tfrecord", RECORDS[2:], "GZIP")
    files = expand_file_patterns(f"tfrecord:{tmp_path}/*.tfrecord")
    assert [r for f in files for r in read_tfrecord(f, compression="auto")] == RECORDS


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tfrecord", [])
    assert path.read_bytes() == b""
    assert list(read_tfrecord(path, compression="auto")) == []


def test_expand_file_patterns(tmp_path: Path) -> None:
    for name in ("b.tfrecord", "a.tfrecord", "c.other"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "dir.tfrecord").mkdir()
    a, b, c = (str(tmp_path / n) for n in ("a.tfrecord", "b.tfrecord", "c.other"))
    assert expand_file_patterns(f"{tmp_path}/*.tfrecord") == [a, b]
    assert expand_file_patterns(f"tfrecord:{tmp_path}/b*,{tmp_path}/*.tfrecord") == [a, b]
    assert expand_file_patterns([f"{tmp_path}/c.*", f"tfrecord:{b}", f"{tmp_path}/./a*"]) == [
        a,
        b,
        c,
    ]
    missing = f"{tmp_path}/nothing*"
    with pytest.raises(ValueError, match="nothing"):
        expand_file_patterns([f"{tmp_path}/*.tfrecord", missing])
    with pytest.raises(ValueError, match="no file pattern"):
        expand_file_patterns(" , ")


@settings(max_examples=50, deadline=None)
@given(
    records=st.lists(st.binary(max_size=300), max_size=20),
    compression=st.sampled_from([None, "GZIP"]),
)
def test_any_records_round_trip(records: list[bytes], compression: str | None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = write(Path(directory) / "r.tfrecord", records, compression)
        assert list(read_tfrecord(path, compression="auto")) == records
