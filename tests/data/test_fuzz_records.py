"""Fuzzed record files -> 0 crashes, hangs or silent corruptions; every failure a
DataError naming the file and the record's byte offset. 300 files here;
``benchmarks/fuzz_records.py`` runs 1,000 (or more) and prints the table."""

from __future__ import annotations

from .fuzz_records import fuzz


def test_fuzzed_files_fail_only_with_located_data_errors(tmp_path):
    result = fuzz(tmp_path, 300, seed=0)
    print(dict(result.counts), dict(result.kinds))
    assert result.failures == 0, result.examples
    # The fuzzing bites: most files are rejected, some still read.
    assert result.counts["error"] > 100 and result.counts["ok"] > 0
