"""Scripted demonstrations of the reach task, written as RLDS episodes.

The demonstrator moves the effector straight at the named block at full speed
(``world_vector = clip((block - effector) / step_size, -1, 1)``, z = 0). The
executed action gets Gaussian noise (``noise``), while the recorded label stays
the demonstrator's clean action at the state visited (DART-style), so the data
shows how to come back from small errors.

An episode of n moves is n + 1 RLDS steps: step i < n holds the observation and
the action taken there (``terminate_episode`` ``[0, 1, 0]``) and the reward that
action earned (1 for the move that reached the block, else 0); the last step
holds the observation after the block was reached, a zero world_vector,
``terminate_episode`` ``[1, 0, 0]`` and ``is_terminal`` (RT-1's fractal
convention: the terminate action is learned from that step). Episodes the noise
kept from succeeding within the step limit are dropped (and counted).

`ScriptedReachPolicy` and `EpisodeToRLDS` are the same demonstrator and
conversion for ``t2r.collect.run_env`` with `rlds_episode_writer` (collect
writes RLDS); `write_demos` is the short way.

Step features (``steps/...``, RT-1's RLDS names): ``observation/image`` (H, W, 3)
JPEG, ``observation/natural_language_embedding`` (512,),
``observation/natural_language_instruction`` text, ``observation/effector``
(2,), ``action/world_vector`` (3,), ``action/rotation_delta`` (3,) zeros,
``action/gripper_closedness_action`` (1,) zeros, ``action/terminate_episode``
(3,) int32; plus RLDS' is_first/is_last/is_terminal/reward/discount.
``episode_metadata/instruction`` is the episode's instruction.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from t2r.data.rlds import RLDSDatasetInfo, RLDSEpisodeWriter, write_rlds
from t2r.research.lang_env.features import EFFECTOR, EMBEDDING, IMAGE, INSTRUCTION
from t2r.research.lang_env.lang_env import LangReachEnv
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

__all__ = [
    "EpisodeToRLDS",
    "ScriptedReachPolicy",
    "demo_step_spec",
    "rlds_episode_writer",
    "scripted_action",
    "scripted_episodes",
    "write_demos",
]

logger = logging.getLogger(__name__)

DATASET_NAME = "lang_reach"
CONTINUE = np.array([0, 1, 0], np.int32)
TERMINATE = np.array([1, 0, 0], np.int32)


def demo_step_spec(render_size: int = 64, embedding_size: int = 512) -> TensorSpecStruct:
    """One step's features as the demos store them (paths as in RT-1's RLDS)."""
    return TensorSpecStruct(
        [
            (
                IMAGE,
                ExtendedTensorSpec((render_size, render_size, 3), torch.uint8, data_format="jpeg"),
            ),
            (
                EMBEDDING,
                ExtendedTensorSpec((embedding_size,), torch.float32),
            ),
            (INSTRUCTION, ExtendedTensorSpec((), "string")),
            (EFFECTOR, ExtendedTensorSpec((2,), torch.float32)),
            ("action/world_vector", ExtendedTensorSpec((3,), torch.float32)),
            ("action/rotation_delta", ExtendedTensorSpec((3,), torch.float32)),
            ("action/gripper_closedness_action", ExtendedTensorSpec((1,), torch.float32)),
            ("action/terminate_episode", ExtendedTensorSpec((3,), torch.int32)),
        ]
    )


EPISODE_SPEC = TensorSpecStruct(
    [("episode_metadata/instruction", ExtendedTensorSpec((), "string"))]
)


def scripted_action(env: LangReachEnv) -> np.ndarray:
    """(3,) float32: the world_vector that moves straight at the named block."""
    delta = (env.blocks[env.target] - env.effector) / env.step_size
    return np.array([*np.clip(delta, -1.0, 1.0), 0.0], np.float32)


LABEL_KEY = "label_world_vector"


class ScriptedReachPolicy:
    """The demonstrator as a t2r collect policy (``reset``, ``sample_action``).

    It reads the env's state (block positions), so it is built on the env it acts
    in. ``sample_action`` returns the noisy action to execute and, in its debug
    dict, the clean action under ``label_world_vector`` (the demonstration's label).
    """

    def __init__(self, env: LangReachEnv, noise: float = 0.3, seed: int = 0) -> None:
        self.env, self.noise = env, float(noise)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def sample_action(
        self, observation: Any, explore_prob: float = 0.0
    ) -> tuple[np.ndarray, dict[str, Any]]:
        label = scripted_action(self.env)
        executed = np.clip(label + self._rng.normal(0.0, self.noise, 3), -1.0, 1.0)
        executed[2] = 0.0
        return executed.astype(np.float32), {LABEL_KEY: label}


class EpisodeToRLDS:
    """A collect episode (``(obs, action, reward, new_obs, done, debug)`` transitions)
    -> ``[RLDS episode]`` for `t2r.data.rlds.RLDSEpisodeWriter` / `write_rlds`.

    Step i holds transition i's observation and its action (the debug dict's
    ``label_world_vector`` where the policy gave one, else the executed action);
    a last step holds the final observation with a zero action and
    ``terminate_episode`` ``[1, 0, 0]``. With ``successful_only``, episodes that
    did not end in success give ``[]`` (nothing is written).
    """

    def __init__(self, successful_only: bool = True) -> None:
        self.successful_only = successful_only

    def __call__(self, transitions: Sequence[Any]) -> list[dict[str, Any]]:
        if not transitions:
            return []
        success = bool(transitions[-1][5].get("success", False))
        if self.successful_only and not success:
            return []
        observations = [t[0] for t in transitions] + [transitions[-1][3]]
        actions = [
            np.asarray(t[5].get(LABEL_KEY, _world_vector_of(t[1])), np.float32) for t in transitions
        ] + [np.zeros(3, np.float32)]
        n = len(observations)
        instruction = observations[0]["natural_language_instruction"]
        return [
            {
                "steps": {
                    IMAGE: np.stack([o["image"] for o in observations]),
                    EMBEDDING: np.stack([o["natural_language_embedding"] for o in observations]),
                    INSTRUCTION: [o["natural_language_instruction"] for o in observations],
                    EFFECTOR: np.stack([o["effector"] for o in observations]),
                    "action/world_vector": np.stack(actions),
                    "action/rotation_delta": np.zeros((n, 3), np.float32),
                    "action/gripper_closedness_action": np.zeros((n, 1), np.float32),
                    "action/terminate_episode": np.stack([CONTINUE] * (n - 1) + [TERMINATE]),
                    "reward": np.array([float(t[2]) for t in transitions] + [0.0], np.float32),
                    "is_terminal": np.arange(n) == n - 1 if success else np.zeros(n, bool),
                },
                "episode_metadata/instruction": instruction,
            }
        ]


def _world_vector_of(action: Any) -> np.ndarray:
    if isinstance(action, dict):
        action = action.get("world_vector", action.get("action/world_vector"))
    world = np.zeros(3, np.float32)
    values = np.asarray(action, np.float32).reshape(-1)[:3]
    world[: len(values)] = values
    return world


def scripted_episodes(
    env: LangReachEnv, num_episodes: int, noise: float = 0.3, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """``num_episodes`` successful demonstrations as `write_rlds` episodes.

    Instructions cycle through the env's, so each gets an equal share. Episodes
    that fail under the noise are dropped and replaced.
    """
    policy = ScriptedReachPolicy(env, noise, seed)
    to_rlds = EpisodeToRLDS(successful_only=True)
    made = dropped = 0
    env.reset(seed=seed)
    while made < num_episodes:
        instruction = env.instructions[made % len(env.instructions)]
        observation, _ = env.reset(options={"instruction": instruction})
        transitions = []
        while True:
            action, debug = policy.sample_action(observation)
            new_observation, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            transitions.append(
                (observation, action, reward, new_observation, done, {**debug, **info})
            )
            observation = new_observation
            if done:
                break
        episodes = to_rlds(transitions)
        if not episodes:
            dropped += 1
            continue
        yield episodes[0]
        made += 1
    if dropped:
        logger.info(
            "dropped %d demonstrations that did not succeed under noise %.2f", dropped, noise
        )


def rlds_episode_writer(render_size: int = 64, embedding_size: int = 512) -> RLDSEpisodeWriter:
    """A replay writer for ``t2r.collect.run_env`` with `EpisodeToRLDS`: collect
    writes the task's episodes as RLDS that RT-1 trains on."""
    return RLDSEpisodeWriter(
        demo_step_spec(render_size, embedding_size), name=DATASET_NAME, episode_spec=EPISODE_SPEC
    )


def write_demos(
    directory: str | os.PathLike[str],
    num_episodes: int,
    split: str = "train",
    *,
    noise: float = 0.3,
    seed: int = 0,
    num_shards: int | None = None,
    env: LangReachEnv | None = None,
) -> RLDSDatasetInfo:
    """Writes ``num_episodes`` demonstrations as split ``split`` of an RLDS directory
    (``<directory>`` is the ``<name>/<version>`` directory tfds would read)."""
    env = env or LangReachEnv()
    episodes = scripted_episodes(env, num_episodes, noise=noise, seed=seed)
    return write_rlds(
        directory,
        episodes,
        demo_step_spec(env.render_size, env.text_encoder.dim),
        episode_spec=EPISODE_SPEC,
        name=DATASET_NAME,
        version="1.0.0",
        split=split,
        num_shards=num_shards,
        description=(
            "Scripted demonstrations of t2r's language-conditioned reach task "
            f"({', '.join(env.instructions)})."
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the <name>/<version> directory")
    parser.add_argument("--train_episodes", type=int, default=300)
    parser.add_argument("--val_episodes", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render_size", type=int, default=64)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    env = LangReachEnv(render_size=args.render_size)
    try:
        for split, count, seed in (
            ("train", args.train_episodes, args.seed),
            ("val", args.val_episodes, args.seed + 1),
        ):
            if count > 0:
                info = write_demos(args.out, count, split, noise=args.noise, seed=seed, env=env)
                logger.info("%s: %s", split, info.splits[split])
    finally:
        env.close()


if __name__ == "__main__":
    main()
