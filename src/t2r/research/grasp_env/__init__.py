"""grasp_env: QT-Opt's bin grasping task on MuJoCo, rendered on the CPU.

* `GraspEnv` (`t2r.research.grasp_env.grasp_env`): the Gymnasium environment
  (registered as ``t2r/Grasp-v0``), its action layout and scales.
* `OBJECT_SETS` (`t2r.research.grasp_env.objects`): the "train" and held-out
  "test" object sets.
* `ScriptedGraspPolicy`, `scripted_grasp_action`
  (`t2r.research.grasp_env.scripted`): a grasping policy that reads the
  simulator's state, for bootstrapping QT-Opt's exploration.

The env and the scripted policy need the ``sim`` extra (mujoco, gymnasium) and
are imported on first use; see docs/grasp_env.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from t2r.research.grasp_env.objects import OBJECT_SETS, ObjectFamily, ObjectSet, ObjectSpec

if TYPE_CHECKING:
    from t2r.research.grasp_env.grasp_env import ACTION_LAYOUT, GraspEnv
    from t2r.research.grasp_env.scripted import ScriptedGraspPolicy, scripted_grasp_action

__all__ = [
    "ACTION_LAYOUT",
    "ENV_ID",
    "OBJECT_SETS",
    "GraspEnv",
    "ObjectFamily",
    "ObjectSet",
    "ObjectSpec",
    "ScriptedGraspPolicy",
    "scripted_grasp_action",
]

ENV_ID = "t2r/Grasp-v0"

_LAZY = {
    "ACTION_LAYOUT": "grasp_env",
    "GraspEnv": "grasp_env",
    "ScriptedGraspPolicy": "scripted",
    "scripted_grasp_action": "scripted",
}


def _register() -> None:
    try:
        import gymnasium
    except ImportError:  # the sim extra is not installed; the env cannot be made anyway
        return
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="t2r.research.grasp_env.grasp_env:GraspEnv")


_register()


def __getattr__(name: str) -> Any:
    # The env imports mujoco (and picks its GL backend) only when asked for.
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"t2r.research.grasp_env.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
