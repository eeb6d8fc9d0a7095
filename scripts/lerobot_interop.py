"""LeRobot's own code against t2r's LeRobot reader and writer, both directions.

Not a test (the suite never needs LeRobot; its fixture is in the repository):

* ``write-fixture DIR`` writes ``DIR/images`` and ``DIR/video`` with LeRobot's
  ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize``: the
  fixture ``tests/fixtures/lerobot_v30`` that ``tests/data/test_lerobot_fixture.py``
  reads with t2r. The frames are a function of (episode, frame) (`fixture_frame`).
* ``check`` writes datasets with t2r (PNG images and AV1 video) and loads them with
  LeRobot's ``LeRobotDataset``: frame counts, episode boundaries, timestamps,
  low-dimensional values and tasks must agree, and in image mode every frame
  ``dataset[i]`` returns.

Run where ``lerobot`` imports (``PYTHONPATH=src .venv/bin/python scripts/lerobot_interop.py
check``). LeRobot 0.4.4 pins torch<2.11 and needs torchvision; the fixture was
made with lerobot 0.4.4 installed ``--no-deps`` beside datasets 4.8 and pandas 2,
with a stand-in ``torchvision.transforms.ToTensor`` (the only torchvision name its
dataset code uses for image datasets). Video frames are not decoded through
LeRobot here (its PyAV path goes through torchvision.io).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np

from t2r.data.episodes import Episode
from t2r.data.lerobot import write_lerobot_dataset

FPS = 10
HEIGHT, WIDTH = 24, 32
EPISODES = ((7, "pick the block"), (5, "place the block"), (9, "pick the block"))


def fixture_frame(episode: int, frame: int) -> np.ndarray:
    """Smooth ramps (a lossy codec keeps them close) that differ from frame to frame."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    channels = [(xx * 8 + 10 * frame) % 256, (yy * 10 + 20 * episode) % 256]
    channels.append(np.full_like(xx, 40 * frame % 256))
    return np.stack(channels, -1).astype(np.uint8)


def fixture_state(episode: int, frame: int) -> np.ndarray:
    return np.full(4, episode + frame / 10, np.float32)


def fixture_action(episode: int, frame: int) -> np.ndarray:
    return np.array([episode, frame], np.float32)


def write_fixture(directory: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    for mode in ("images", "video"):
        root = os.path.join(directory, mode)
        shutil.rmtree(root, ignore_errors=True)
        camera = {"dtype": "video" if mode == "video" else "image", "shape": (HEIGHT, WIDTH, 3)}
        features = {
            "observation.image": {**camera, "names": ["height", "width", "channels"]},
            "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
            "action": {"dtype": "float32", "shape": (2,), "names": None},
        }
        dataset = LeRobotDataset.create(
            "local/lerobot_written", fps=FPS, root=root, features=features,
            use_videos=mode == "video", robot_type="toy",
        )  # fmt: skip
        for episode, (length, task) in enumerate(EPISODES):
            for frame in range(length):
                dataset.add_frame(
                    {
                        "observation.image": fixture_frame(episode, frame),
                        "observation.state": fixture_state(episode, frame),
                        "action": fixture_action(episode, frame),
                        "task": task,
                    }
                )
            dataset.save_episode()
        dataset.finalize()
        print(f"LeRobot wrote {root}")


def check() -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            {
                "observation/image": rng.integers(0, 255, (n, HEIGHT, WIDTH, 3), dtype=np.uint8),
                "observation/state": rng.normal(size=(n, 4)).astype(np.float32),
                "action": rng.normal(size=(n, 2)).astype(np.float32),
            },
            {"task": task},
        )
        for n, task in EPISODES
    ]
    for video in (False, True):
        root = os.path.join(tempfile.mkdtemp(), "dataset")
        write_lerobot_dataset(root, episodes, fps=FPS, video=video)
        loaded = LeRobotDataset("local/t2r_written", root=root, video_backend="pyav")
        total = sum(episode.num_steps for episode in episodes)
        assert (loaded.num_frames, loaded.num_episodes, loaded.fps) == (total, len(episodes), FPS)
        index = 0
        for e, episode in enumerate(episodes):
            for t in range(episode.num_steps):
                row = loaded.hf_dataset[index]
                assert (int(row["episode_index"]), int(row["frame_index"])) == (e, t)
                assert abs(float(row["timestamp"]) - t / FPS) < 1e-6
                np.testing.assert_array_equal(np.asarray(row["action"]), episode.steps["action"][t])
                np.testing.assert_array_equal(
                    np.asarray(row["observation.state"]), episode.steps["observation/state"][t]
                )
                if not video:
                    item = loaded[index]
                    image = item["observation.image"].numpy().transpose(1, 2, 0) * 255
                    np.testing.assert_array_equal(
                        image.round().astype(np.uint8), episode.steps["observation/image"][t]
                    )
                    assert item["task"] == episode.metadata["task"]
                index += 1
        print(f"LeRobot loads t2r's {'video' if video else 'image'} dataset: {total} frames agree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("write-fixture").add_argument("directory")
    commands.add_parser("check")
    args = parser.parse_args()
    if args.command == "write-fixture":
        write_fixture(args.directory)
    else:
        check()


if __name__ == "__main__":
    main()
