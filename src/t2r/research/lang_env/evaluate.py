"""Success per instruction on the reach task: an RT-1 policy against a random one.

Every policy meets the same episodes: for instruction k and episode i the env is
reset with seed ``seed + 1000 * k + i`` and that instruction, so block layouts
and effector starts are shared across policies.

`RT1WindowPolicy` feeds an RT-1 model the window its training data had: the
last T frames and embeddings, where steps before the episode's start repeat
step 0 (as `t2r.data.rlds` builds training windows), and reads the action of
the last slot (``predict_window``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from t2r.atomic import atomic_write_text
from t2r.research.lang_env.lang_env import LangReachEnv

__all__ = [
    "InstructionResult",
    "RT1WindowPolicy",
    "RandomPolicy",
    "evaluate_policy",
    "format_success_table",
]

logger = logging.getLogger(__name__)


class Policy(Protocol):
    def reset(self) -> None: ...

    def __call__(self, observation: Mapping[str, Any]) -> Any: ...


class RandomPolicy:
    """Uniform world_vector in [-1, 1]^3 (seeded)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def __call__(self, observation: Mapping[str, Any]) -> np.ndarray:
        return self._rng.uniform(-1.0, 1.0, 3).astype(np.float32)


class WindowModel(Protocol):
    """What `RT1WindowPolicy` needs of an RT-1 model (``t2r.research.rt1.RT1Model``)."""

    time_sequence_length: int

    def predict_window(self, images: torch.Tensor, embedding: torch.Tensor) -> dict[str, Any]: ...


class RT1WindowPolicy:
    """An RT-1 model over the last T frames, step 0 repeated before the start.

    Args:
      model: the model (put in eval mode here).
      world_vector_key: the output holding the world vector.
    """

    def __init__(self, model: WindowModel, world_vector_key: str = "action/world_vector") -> None:
        self.model = model
        if isinstance(model, torch.nn.Module):
            model.eval()
        self.key = world_vector_key
        self._images: list[np.ndarray] = []
        self._embeddings: list[np.ndarray] = []

    def reset(self) -> None:
        self._images, self._embeddings = [], []

    def __call__(self, observation: Mapping[str, Any]) -> np.ndarray:
        self._images.append(np.asarray(observation["image"]))
        self._embeddings.append(np.asarray(observation["natural_language_embedding"]))
        t = self.model.time_sequence_length
        index = np.maximum(np.arange(len(self._images) - t, len(self._images)), 0)
        images = torch.from_numpy(np.stack([self._images[i] for i in index]))[None]
        embedding = torch.from_numpy(np.stack([self._embeddings[i] for i in index]))[None]
        with torch.no_grad():
            outputs = self.model.predict_window(images, embedding)
        return outputs[self.key][0].float().numpy()


@dataclasses.dataclass
class InstructionResult:
    instruction: str
    episodes: int
    successes: int
    steps_to_success: list[int]

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0


def evaluate_policy(
    env: LangReachEnv,
    policy: Policy,
    episodes_per_instruction: int,
    seed: int = 10_000,
) -> dict[str, InstructionResult]:
    """Runs ``episodes_per_instruction`` episodes of each instruction."""
    results = {}
    for k, instruction in enumerate(env.instructions):
        result = InstructionResult(instruction, 0, 0, [])
        for i in range(episodes_per_instruction):
            observation, _ = env.reset(
                seed=seed + 1000 * k + i, options={"instruction": instruction}
            )
            policy.reset()
            while True:
                observation, _, terminated, truncated, info = env.step(policy(observation))
                if terminated or truncated:
                    break
            result.episodes += 1
            if info["success"]:
                result.successes += 1
                result.steps_to_success.append(env.steps)
        results[instruction] = result
    return results


def format_success_table(results: Mapping[str, Mapping[str, InstructionResult]]) -> str:
    """A markdown table: one row per instruction, one column per policy."""
    names = list(results)
    instructions = list(next(iter(results.values())))
    lines = [
        "| instruction | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def cell(r: InstructionResult) -> str:
        return f"{r.successes}/{r.episodes} ({100 * r.success_rate:.0f}%)"

    for instruction in instructions:
        cells = [cell(results[n][instruction]) for n in names]
        lines.append(f"| {instruction} | " + " | ".join(cells) + " |")
    totals = []
    for n in names:
        s = sum(r.successes for r in results[n].values())
        e = sum(r.episodes for r in results[n].values())
        totals.append(f"{s}/{e} ({100 * s / e:.0f}%)")
    lines.append("| all | " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None,
    make_model: Callable[[], WindowModel] | None = None,
) -> None:
    """Evaluates the newest checkpoint of ``--model_dir`` and a random policy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--gin_configs", action="append", default=[])
    parser.add_argument("--gin_bindings", action="append", default=[])
    parser.add_argument("--episodes", type=int, default=20, help="per instruction")
    parser.add_argument("--render_size", type=int, default=64)
    parser.add_argument("--json_out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    from t2r.bin import gin_config
    from t2r.train import latest_checkpoint
    from t2r.train.checkpoints import load_model_weights

    if make_model is None:
        import gin

        gin_config.parse(args.gin_configs, args.gin_bindings)
        model = gin.query_parameter("train_eval_model.t2r_model").scoped_configurable_fn()
    else:
        model = make_model()
    checkpoint = latest_checkpoint(args.model_dir)
    if checkpoint is None:
        raise SystemExit(f"no checkpoint in {args.model_dir}")
    load_model_weights(checkpoint, model)
    results = {}
    env = LangReachEnv(render_size=args.render_size)
    try:
        for name, policy in (
            (f"RT-1 (step {checkpoint.global_step})", RT1WindowPolicy(model)),
            ("random", RandomPolicy(0)),
        ):
            start = time.perf_counter()
            results[name] = evaluate_policy(env, policy, args.episodes)
            logger.info("%s: %.1f s", name, time.perf_counter() - start)
    finally:
        env.close()
    print(format_success_table(results))
    if args.json_out:
        table = {
            n: {i: dataclasses.asdict(r) for i, r in res.items()} for n, res in results.items()
        }
        atomic_write_text(args.json_out, json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
