"""Grasp2Vec's data from the QT-Opt grasp env: scenes before and after a grasp.

`collect_grasp_triplets` runs `ScriptedGraspPolicy` in a `GraspEnv` and keeps
the successful grasps. Per kept grasp (all images (S, S, 3) uint8 from the
env's camera):

* ``pregrasp``: the bin at reset, every object in it (and the open gripper);
* ``postgrasp``: the bin after the lift with the lifted object hidden
  (``render_image(hide_objects=[lifted])``): the objects left behind;
* ``lifted``: the lifted object alone in the raised gripper, every other
  object hidden: T2R's goal image (the robot showed the object to the camera);
* ``objects``: (N, S, S, 3), each object of the scene alone where it lay
  before the grasp (the others hidden), and ``grasped``: the index of the
  lifted one among them. These are the candidates of the retrieval test,
  all rendered alike so that none stands out by how it was photographed.

`GraspTriplets.goal_images(kind)` picks the goal image to train with:
``"lifted"`` (T2R's) or ``"at_rest"`` (``objects[grasped]``).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from typing import Any

import numpy as np

from t2r.atomic import atomic_write_bytes
from t2r.research.grasp_env.grasp_env import GraspEnv
from t2r.research.grasp_env.scripted import ScriptedGraspPolicy

logger = logging.getLogger(__name__)

__all__ = ["GOAL_KINDS", "GraspTriplets", "collect_grasp_triplets"]

GOAL_KINDS = ("lifted", "at_rest")


@dataclasses.dataclass
class GraspTriplets:
    """Successful grasps as arrays (see the module docstring).

    pregrasp, postgrasp, lifted: (B, S, S, 3) uint8; objects: (B, N, S, S, 3)
    uint8; grasped: (B,) int64; seeds: (B,) int64, the env seed of each grasp.
    """

    pregrasp: np.ndarray
    postgrasp: np.ndarray
    lifted: np.ndarray
    objects: np.ndarray
    grasped: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return int(self.pregrasp.shape[0])

    def goal_images(self, kind: str = "lifted") -> np.ndarray:
        """(B, S, S, 3) uint8 goal images: ``"lifted"`` or ``"at_rest"``."""
        if kind == "lifted":
            return self.lifted
        if kind == "at_rest":
            return self.objects[np.arange(len(self)), self.grasped]
        raise ValueError(
            f"GraspTriplets.goal_images: kind must be one of {GOAL_KINDS}, got {kind!r}."
        )

    def subset(self, index: np.ndarray | slice) -> GraspTriplets:
        return GraspTriplets(
            **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)}
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes an .npz (no pickle) atomically (`t2r.atomic.atomic_write_bytes`)."""
        buffer = io.BytesIO()
        np.savez(buffer, **{k.name: getattr(self, k.name) for k in dataclasses.fields(self)})
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GraspTriplets:
        with np.load(path, allow_pickle=False) as data:
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
            if missing:
                raise ValueError(f"GraspTriplets.load: {path} lacks arrays {missing}.")
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def collect_grasp_triplets(
    num_grasps: int,
    num_objects: int = 4,
    image_size: int = 64,
    object_set: str = "train",
    seed: int = 0,
    noise: float = 0.0,
    max_episodes: int | None = None,
) -> GraspTriplets:
    """Runs scripted grasps (env seeds ``seed, seed + 1, ...``) until `num_grasps`
    succeed (or `max_episodes`, default 3 x `num_grasps`, were tried).

    Episodes whose lift leaves more or fewer than one object up are skipped,
    as are unsuccessful ones.
    """
    if num_grasps < 1:
        raise ValueError(f"collect_grasp_triplets: num_grasps must be >= 1, got {num_grasps}.")
    max_episodes = 3 * num_grasps if max_episodes is None else max_episodes
    env = GraspEnv(object_set=object_set, num_objects=num_objects, image_size=image_size)
    policy = ScriptedGraspPolicy(env, noise=noise, seed=seed)
    rows: dict[str, list[np.ndarray]] = {f.name: [] for f in dataclasses.fields(GraspTriplets)}
    everyone = list(range(num_objects))
    try:
        for episode in range(max_episodes):
            if len(rows["pregrasp"]) >= num_grasps:
                break
            env_seed = seed + episode
            obs, _ = env.reset(seed=env_seed)
            policy.reset()
            pregrasp = obs["image"]
            objects = np.stack(
                [env.render_image(hide_objects=[j for j in everyone if j != i]) for i in everyone]
            )
            done, info = False, dict[str, Any]()
            while not done:
                obs, _, done, _, info = env.step(policy.select_action(obs))
            lifted = np.flatnonzero(env.lifted())
            if not info.get("grasp_success", False) or len(lifted) != 1:
                continue
            grasped = int(lifted[0])
            rows["pregrasp"].append(pregrasp)
            rows["postgrasp"].append(env.render_image(hide_objects=[grasped]))
            rows["lifted"].append(
                env.render_image(hide_objects=[j for j in everyone if j != grasped])
            )
            rows["objects"].append(objects)
            rows["grasped"].append(np.array(grasped, dtype=np.int64))
            rows["seeds"].append(np.array(env_seed, dtype=np.int64))
    finally:
        env.close()
    if len(rows["pregrasp"]) < num_grasps:
        logger.warning(
            "collect_grasp_triplets: %d of %d grasps succeeded in %d episodes.",
            len(rows["pregrasp"]),
            num_grasps,
            max_episodes,
        )
    if not rows["pregrasp"]:
        raise RuntimeError(
            f"collect_grasp_triplets: no successful grasp in {max_episodes} episodes."
        )
    return GraspTriplets(**{k: np.stack(v) for k, v in rows.items()})
