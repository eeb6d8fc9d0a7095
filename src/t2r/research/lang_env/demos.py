"""Scripted demonstrations of the reach task, written as RLDS episodes.

The demonstrator moves the effector straight at the named block at full speed
(``world_vector = clip((block - effector) / step_size, -1, 1)``, z = 0). The
executed action gets Gaussian noise (``noise``), while the recorded label stays
the demonstrator's clean action at the state visited (DART-style), so the data
shows how to come back from small errors.

An episode of n moves is n + 1 RLDS steps: steps 0..n-1 hold the observation and
the action taken there (``terminate_episode`` ``[0, 1, 0]``, reward 0); the last
step holds the observation after the block was reached, a zero world_vector,
``terminate_episode`` ``[1, 0, 0]``, reward 1 and ``is_terminal`` (RT-1's
fractal convention). Episodes the noise kept from succeeding within the step
limit are dropped (and counted).

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

from t2r.data.rlds import RLDSDatasetInfo, write_rlds
from t2r.research.lang_env.lang_env import LangReachEnv
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct

__all__ = ["demo_step_spec", "scripted_action", "scripted_episodes", "write_demos"]

logger = logging.getLogger(__name__)

DATASET_NAME = "lang_reach"
CONTINUE = np.array([0, 1, 0], np.int32)
TERMINATE = np.array([1, 0, 0], np.int32)


def demo_step_spec(render_size: int = 32, embedding_size: int = 512) -> TensorSpecStruct:
    """One step's features as the demos store them (paths as in RT-1's RLDS)."""
    return TensorSpecStruct(
        [
            (
                "observation/image",
                ExtendedTensorSpec((render_size, render_size, 3), torch.uint8, data_format="jpeg"),
            ),
            (
                "observation/natural_language_embedding",
                ExtendedTensorSpec((embedding_size,), torch.float32),
            ),
            ("observation/natural_language_instruction", ExtendedTensorSpec((), "string")),
            ("observation/effector", ExtendedTensorSpec((2,), torch.float32)),
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


def scripted_episodes(
    env: LangReachEnv, num_episodes: int, noise: float = 0.3, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """``num_episodes`` successful demonstrations as `write_rlds` episodes.

    Instructions cycle through the env's, so each gets an equal share. Episodes
    that fail under the noise are dropped and replaced.
    """
    rng = np.random.default_rng(seed)
    made = dropped = 0
    attempt = 0
    while made < num_episodes:
        instruction = env.instructions[made % len(env.instructions)]
        observation, _ = env.reset(
            seed=int(rng.integers(2**31)) if attempt == 0 else None,
            options={"instruction": instruction},
        )
        attempt += 1
        steps: list[tuple[dict[str, Any], np.ndarray]] = []
        success = False
        while True:
            action = scripted_action(env)
            steps.append((observation, action))
            executed = np.clip(action + rng.normal(0.0, noise, 3), -1.0, 1.0)
            observation, _, success, truncated, _ = env.step(executed)
            if success or truncated:
                break
        if not success:
            dropped += 1
            continue
        steps.append((observation, np.zeros(3, np.float32)))
        n = len(steps)
        terminate = np.stack([CONTINUE] * (n - 1) + [TERMINATE])
        yield {
            "steps": {
                "observation/image": np.stack([o["image"] for o, _ in steps]),
                "observation/natural_language_embedding": np.stack(
                    [o["natural_language_embedding"] for o, _ in steps]
                ),
                "observation/natural_language_instruction": [
                    o["natural_language_instruction"] for o, _ in steps
                ],
                "observation/effector": np.stack([o["effector"] for o, _ in steps]),
                "action/world_vector": np.stack([a for _, a in steps]),
                "action/rotation_delta": np.zeros((n, 3), np.float32),
                "action/gripper_closedness_action": np.zeros((n, 1), np.float32),
                "action/terminate_episode": terminate,
                "reward": (np.arange(n) == n - 1).astype(np.float32),
            },
            "episode_metadata/instruction": instruction,
        }
        made += 1
    if dropped:
        logger.info(
            "dropped %d demonstrations that did not succeed under noise %.2f", dropped, noise
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
    parser.add_argument("--render_size", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    env = LangReachEnv(render_size=args.render_size)
    for split, count, seed in (
        ("train", args.train_episodes, args.seed),
        ("val", args.val_episodes, args.seed + 1),
    ):
        if count > 0:
            info = write_demos(args.out, count, split, noise=args.noise, seed=seed, env=env)
            logger.info("%s: %s", split, info.splits[split])
    env.close()


if __name__ == "__main__":
    main()
