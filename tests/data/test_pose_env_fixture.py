"""The real TFRecord TensorFlow wrote for T2R's pose_env test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from t2r.data import Example, TFRecordWriter, decode_image, read_tfrecord


def test_reads_and_parses_all_records(pose_env_tfrecord: Path) -> None:
    records = list(read_tfrecord(pose_env_tfrecord, verify_crc=True))
    assert len(records) == 100
    rewards = []
    for record in records:
        feature = Example.FromString(record).features.feature
        assert sorted(feature) == ["pose", "reward", "state/image", "target_pose"]
        (jpeg,) = feature["state/image"].bytes_list.value
        image = decode_image(jpeg, (64, 64, 3), np.uint8, key="state/image")
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 0
        assert len(feature["pose"].float_list.value) == 2
        assert len(feature["target_pose"].float_list.value) == 2
        rewards.extend(feature["reward"].float_list.value)
    assert len(rewards) == 100
    assert all(r < 0 for r in rewards)


def test_our_writer_reproduces_the_file_byte_for_byte(
    pose_env_tfrecord: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.tfrecord"
    with TFRecordWriter(copy) as writer:
        for record in read_tfrecord(pose_env_tfrecord):
            writer.write(record)
    assert copy.read_bytes() == pose_env_tfrecord.read_bytes()
