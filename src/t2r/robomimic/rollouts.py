"""Rollouts: a policy in an environment, scored like robomimic's.

`run_rollout` is robomimic's ``TrainUtils.run_rollout``: one episode of at most
`horizon` steps; success is "the task succeeded at any step", the return is the
sum of rewards. `rollout_with_stats` averages episodes (``Success_Rate``,
``Return``, ``Horizon``) as robomimic's training loop and ``run_trained_agent``
report them. The policy is anything with ``start_episode()`` and
``__call__(ob, goal=None) -> action``: `t2r.robomimic.rollout_policy.RolloutPolicy`
(live or from an export), or the scripted demonstrator.

Videos are mp4 (OpenCV's ``mp4v``; OpenCV comes with robosuite), frames from
``env.render`` every `video_skip` steps, written under a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from t2r.atomic import fsync_directory, temporary_path_for
from t2r.robomimic.envs import RobomimicEnv

logger = logging.getLogger(__name__)

__all__ = ["Policy", "VideoWriter", "rollout_with_stats", "run_rollout"]


class Policy(Protocol):
    """What a rollout needs of a policy (robomimic's RolloutPolicy surface)."""

    def start_episode(self) -> None: ...

    def __call__(
        self, ob: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray: ...


class VideoWriter:
    """Appends RGB frames, (H, W, 3) uint8, to an mp4 that appears at `path` on `close()`.

    The frame size is fixed by the first frame. Use as a context manager; on an
    error inside it the partial video is removed.
    """

    def __init__(self, path: str | os.PathLike[str], fps: int = 20) -> None:
        self.path = Path(path)
        self.fps = int(fps)
        self._tmp_dir = Path(temporary_path_for(self.path))
        self._tmp_file = self._tmp_dir / self.path.name
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        import cv2

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"VideoWriter({self.path}): frames must be (H, W, 3) uint8, got "
                f"{frame.shape} {frame.dtype}."
            )
        height, width = frame.shape[:2]
        if self._writer is None:
            self._tmp_dir.mkdir(parents=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
            self._writer = cv2.VideoWriter(str(self._tmp_file), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write an mp4v video at {self._tmp_file}.")
            self._size = (height, width)
        elif (height, width) != self._size:
            expected = self._size or (0, 0)
            raise ValueError(
                f"VideoWriter({self.path}): frame {self.frames} is {height}x{width}, the video "
                f"is {expected[0]}x{expected[1]}."
            )
        self._writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
        self.frames += 1

    def close(self) -> None:
        """Finishes the file and renames it into place (nothing is written without frames)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        os.replace(self._tmp_file, self.path)
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        fsync_directory(self.path.parent)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


@contextlib.contextmanager
def _video(path: str | os.PathLike[str] | None, video_skip: int) -> Iterator[VideoWriter | None]:
    """A writer for every `video_skip`-th frame of a 20 Hz control loop, or None."""
    if path is None:
        yield None
        return
    with VideoWriter(path, fps=max(1, 20 // max(1, video_skip))) as writer:
        yield writer


def run_rollout(
    policy: Policy,
    env: RobomimicEnv,
    horizon: int,
    video_path: str | os.PathLike[str] | None = None,
    video_writer: VideoWriter | None = None,
    video_skip: int = 5,
    video_size: tuple[int, int] = (512, 512),
    camera_name: str | None = None,
    terminate_on_success: bool = False,
    use_goals: bool = False,
) -> dict[str, float]:
    """One episode of at most `horizon` steps.

    Returns robomimic's keys: ``Return`` (sum of rewards up to the last step taken),
    ``Horizon`` (steps taken), ``Success_Rate`` (1.0 if ``is_success()["task"]`` held
    at any step) and ``<k>_Success_Rate`` for the env's other success criteria.
    The episode ends early when the env says done, or on the first success with
    `terminate_on_success`. A simulation error (``env.rollout_exceptions``) ends it
    with a warning, as in robomimic. Frames (`video_size` = (height, width)) go to
    `video_writer`, or to a new mp4 at `video_path`.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}.")
    if video_path is not None and video_writer is not None:
        raise ValueError("Pass video_path or video_writer, not both.")
    with _video(video_path, video_skip) as own_writer:
        writer = video_writer or own_writer
        policy.start_episode()
        ob = env.reset()
        goal = env.get_goal() if use_goals else None  # type: ignore[attr-defined]
        rewards: list[float] = []
        success: dict[str, bool] = {}
        try:
            for step in range(horizon):
                action = policy(ob, goal)
                ob, reward, done, _ = env.step(action)
                rewards.append(float(reward))
                for key, value in env.is_success().items():
                    success[key] = success.get(key, False) or bool(value)
                if writer is not None and step % video_skip == 0:
                    writer.append(env.render(*video_size, camera_name=camera_name))
                if done or (terminate_on_success and success.get("task", False)):
                    break
        except tuple(env.rollout_exceptions) as error:
            logger.warning("Rollout stopped by a simulation error: %s", error)
    results = {
        "Return": float(np.sum(rewards)),
        "Horizon": float(len(rewards)),
        "Success_Rate": float(success.get("task", False)),
    }
    for key, value in success.items():
        if key != "task":
            results[f"{key}_Success_Rate"] = float(value)
    return results


def rollout_with_stats(
    policy: Policy,
    env: RobomimicEnv,
    horizon: int,
    num_episodes: int,
    video_path: str | os.PathLike[str] | None = None,
    video_skip: int = 5,
    video_size: tuple[int, int] = (512, 512),
    camera_name: str | None = None,
    terminate_on_success: bool = False,
    seed: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """`num_episodes` rollouts; the means of `run_rollout`'s results, plus
    ``Num_Success``, ``Num_Episodes``, ``Time_Episode`` (mean seconds) and
    ``episodes`` (each episode's results). All episodes go into one video at
    `video_path`. `seed` seeds numpy's global RNG (robosuite draws its initial
    object placements from it), so the same seed gives the same episodes."""
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}.")
    if seed is not None:
        np.random.seed(seed % 2**32)
    episodes: list[dict[str, float]] = []
    start = time.perf_counter()
    progress = tqdm(total=num_episodes, desc="rollouts", disable=not show_progress)
    with _video(video_path, video_skip) as writer:
        for _ in range(num_episodes):
            episodes.append(
                run_rollout(
                    policy,
                    env,
                    horizon,
                    video_writer=writer,
                    video_skip=video_skip,
                    video_size=video_size,
                    camera_name=camera_name,
                    terminate_on_success=terminate_on_success,
                )
            )
            progress.update(1)
            rate = np.mean([e["Success_Rate"] for e in episodes])
            progress.set_postfix(success_rate=f"{rate:.3f}")
    progress.close()
    elapsed = time.perf_counter() - start
    keys = sorted({k for episode in episodes for k in episode})
    stats: dict[str, Any] = {
        k: float(np.mean([episode.get(k, 0.0) for episode in episodes])) for k in keys
    }
    stats["Num_Success"] = float(sum(e["Success_Rate"] for e in episodes))
    stats["Num_Episodes"] = float(num_episodes)
    stats["Time_Episode"] = elapsed / num_episodes
    stats["episodes"] = episodes
    return stats
