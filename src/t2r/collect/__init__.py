"""Collect: run policies in environments, write episodes as records, evaluate.

Tensor2Robot's collection side (``dql_grasping_lib/run_env.py``,
``meta_learning/run_meta_env.py``, ``utils/writer.py``,
``utils/continuous_collect_eval.py``):

* `run_env`, `run_meta_env`: episodes -> transitions -> a replay writer; mean
  reward logged, returned (`EnvRunResult`) and written as summaries.
* `SpecEpisodeToTransitions`: episodes -> records laid out by a transition
  spec, through the spec-driven serializer (a new sensor is one spec).
* `TFRecordReplayWriter`: atomic TFRecord files, one per ``open`` or per N
  episodes, with names (`unique_record_prefix`) that several collector
  processes writing into one directory never share.
* `ProcessCollector` (`t2r.collect.parallel`): a run split into shards
  (`split_shards`), each collected by its own process into one root directory,
  with no episode lost or duplicated and no partial file visible when a worker
  dies; the `Collector` interface a Ray-based collector shares.
* `RayCollector` (`t2r.collect.ray_collector`): the same on Ray actors, plus a
  continuous mode (`RayCollector.start`) whose actors collect until stopped and
  are restarted by Ray when they die, losing at most their unfinished episode.
* `collect_eval_loop`: restore the newest policy, collect and evaluate each new
  global step once (persisted in the root directory), once or continuously.

``t2r collect --gin_configs ... --root_dir ...`` (or
``python -m t2r.bin.run_collect_eval``) runs a gin-configured `collect_eval_loop`.
"""

from __future__ import annotations

from t2r.collect.collect_eval import CollectEvalState, collect_eval_loop, records_pattern
from t2r.collect.parallel import (
    CollectError,
    CollectFn,
    Collector,
    CollectReport,
    CollectShard,
    ProcessCollector,
    check_report,
    split_shards,
)
from t2r.collect.ray_collector import (
    ContinuousCollection,
    LoopContext,
    RayCollector,
    ray_session,
)
from t2r.collect.replay_writer import (
    TFRecordReplayWriter,
    collector_id,
    recover_replay_directory,
    unique_record_prefix,
)
from t2r.collect.rollouts import EnvRunResult, ExploreSchedule, Transition, run_env, run_meta_env
from t2r.collect.transitions import SpecEpisodeToTransitions

__all__ = [
    "CollectError",
    "CollectEvalState",
    "CollectFn",
    "CollectReport",
    "CollectShard",
    "Collector",
    "ContinuousCollection",
    "EnvRunResult",
    "ExploreSchedule",
    "LoopContext",
    "ProcessCollector",
    "RayCollector",
    "SpecEpisodeToTransitions",
    "TFRecordReplayWriter",
    "Transition",
    "check_report",
    "collect_eval_loop",
    "collector_id",
    "ray_session",
    "records_pattern",
    "recover_replay_directory",
    "run_env",
    "run_meta_env",
    "split_shards",
    "unique_record_prefix",
]
