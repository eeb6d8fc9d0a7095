"""Collection on Ray actors: `RayCollector`, the `Collector` that scales past one machine.

Two modes share one actor class:

* **Finite** (`RayCollector.collect`): the `t2r.collect.Collector` protocol,
  ``collect(collect_fn, shards) -> CollectReport``, with the guarantees
  `t2r.collect.ProcessCollector` documents (no lost or duplicated episode, no
  partial file visible, one failure stops the run and `CollectError` names
  the collector). Shards beyond `num_actors` queue on the actors (shard ``i``
  runs on actor ``i % num_actors``, one at a time). An actor that dies (SIGKILL,
  out of memory) fails the run even though Ray restarts it: its shard had
  published some of its episodes, so running the shard again would duplicate
  them and not running it would lose its share.

* **Continuous** (`RayCollector.start`): each actor runs
  ``loop_fn(shard, context)`` until told to stop (`ContinuousCollection.stop`):
  a QT-Opt collector that keeps picking up the newest export and writing
  episodes into a replay directory. Here a dead actor is part of life: Ray
  restarts it (``max_restarts``), `ContinuousCollection.poll` notices the
  failed call, publishes the complete episodes the dead process had written
  (`t2r.collect.recover_replay_directory`: its unfinished episode is lost,
  nothing else), removes its other temporary files, and calls ``loop_fn`` again
  on the restarted actor with ``context.attempt`` one higher (so it draws new
  seeds, `LoopContext.seed`). A ``loop_fn`` that *raises* is a bug, not a
  crash: it stops the collection with `CollectError`.

Ray: `ray_session` starts a local Ray instance (``num_cpus`` below the
machine's CPUs unless given, no dashboard, a small object store) when none is
connected, or connects to ``address`` (a cluster's head, ``ray://...`` or
``host:port``); it shuts down only what it started. Actors reserve a fraction
of a CPU (`num_cpus_per_actor`), so several share a core; Ray sets their
``OMP_NUM_THREADS`` to 1 and the actor sets ``torch.set_num_threads``.

``collect_fn`` and ``loop_fn`` must be importable by the actors: module-level
functions (or ``functools.partial`` of one) in an installed package or on the
workers' ``sys.path`` (a local Ray instance inherits the driver's environment
and working directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from tqdm.auto import tqdm

from t2r.atomic import is_temporary_path
from t2r.collect.parallel import (
    CollectError,
    CollectFn,
    CollectReport,
    CollectShard,
    check_report,
    ordered_shards,
    remove_temporaries,
)
from t2r.collect.replay_writer import recover_replay_directory
from t2r.collect.rollouts import EnvRunResult

__all__ = [
    "ActorStatus",
    "ContinuousCollectFn",
    "ContinuousCollection",
    "LoopContext",
    "RayCollector",
    "default_num_cpus",
    "ray_session",
]

logger = logging.getLogger(__name__)


def default_num_cpus() -> int:
    """CPUs a local Ray instance gets by default: all usable ones but one (at least 1),
    so that learners and the driver keep a core."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (usable or 1) - 1)


@contextlib.contextmanager
def ray_session(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int = 200 * 1024**2,
) -> Iterator[None]:
    """Makes sure Ray is connected for the ``with`` block; shuts down only what it started.

    Already connected (``ray.is_initialized()``): nothing is done. Else, with
    `address` it connects to that cluster; without, it starts a local instance
    with `num_cpus` (default `default_num_cpus`), no dashboard and an object
    store of `object_store_memory` bytes (the collectors pass small results).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address is not None:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus if num_cpus is not None else default_num_cpus(),
            include_dashboard=False,
            object_store_memory=object_store_memory,
            log_to_driver=True,
        )
    try:
        yield
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- continuous mode
class LoopContext:
    """What ``loop_fn`` gets in the actor: when to stop, where to count episodes.

    Attributes:
      shard: this actor's shard (its ``num_episodes`` is unused in continuous mode).
      attempt: 0 on the first call, one more after each restart of the actor.
    """

    def __init__(self, shard: CollectShard, attempt: int) -> None:
        self.shard = shard
        self.attempt = attempt
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.episodes = 0
        self.transitions = 0
        self.reward_sum = 0.0
        self.global_step = -1

    @property
    def seed(self) -> int:
        """A seed distinct per shard and attempt (a restarted actor draws new episodes)."""
        return self.shard.seed + 1_000_003 * self.attempt

    def should_stop(self) -> bool:
        """True once `ContinuousCollection.stop` asked this actor to finish."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def on_episode(self, num_transitions: int, reward: float, global_step: int) -> None:
        """Counts one finished (written) episode collected by the policy at `global_step`."""
        with self._lock:
            self.episodes += 1
            self.transitions += int(num_transitions)
            self.reward_sum += float(reward)
            self.global_step = int(global_step)

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {
                "episodes": self.episodes,
                "transitions": self.transitions,
                "reward_sum": self.reward_sum,
                "global_step": self.global_step,
            }


class ContinuousCollectFn(Protocol):
    """``loop_fn(shard, context)``: collects until ``context.should_stop()``, calling
    ``context.on_episode(...)`` after each episode it wrote."""

    def __call__(self, shard: CollectShard, context: LoopContext) -> None: ...


@dataclasses.dataclass
class ActorStatus:
    """One continuous collector as the driver last saw it.

    `episodes`, `transitions`, `reward_sum` add up the dead attempts (as last
    polled: the episodes a dead process wrote after the last poll are missing)
    and the running one; `attempt_episodes` is the running attempt's own count
    (exact after `ContinuousCollection.stop`).
    """

    index: int
    pid: int | None
    attempt: int
    episodes: int
    transitions: int
    reward_sum: float
    global_step: int
    alive: bool
    attempt_episodes: int = 0

    @property
    def restarts(self) -> int:
        return self.attempt


# ---------------------------------------------------------------------- the actor
class _CollectorActor:
    """Runs collect functions; control calls (pid, progress, stop) run beside them."""

    def __init__(self, num_threads: int) -> None:
        import torch

        torch.set_num_threads(num_threads)
        self._episodes = 0
        self._context: LoopContext | None = None

    def pid(self) -> int:
        return os.getpid()

    def progress(self) -> int:
        return self._episodes

    def counts(self) -> dict[str, Any] | None:
        context = self._context
        return None if context is None else {"attempt": context.attempt, **context.counts()}

    def stop(self) -> None:
        if self._context is not None:
            self._context.request_stop()

    def run(self, collect_fn: CollectFn, shard: CollectShard) -> dict[str, EnvRunResult]:
        def on_episode() -> None:
            self._episodes += 1

        return dict(collect_fn(shard, on_episode))

    def run_loop(
        self, loop_fn: ContinuousCollectFn, shard: CollectShard, attempt: int
    ) -> dict[str, Any]:
        self._context = LoopContext(shard, attempt)
        loop_fn(shard, self._context)
        return self._context.counts()


_REMOTE_ACTOR: Any = None


def _remote_actor_class() -> Any:
    """The Ray actor class (made once: decorating needs ``import ray``)."""
    global _REMOTE_ACTOR
    if _REMOTE_ACTOR is None:
        import ray

        control = ray.method(concurrency_group="control")
        for name in ("pid", "progress", "counts", "stop"):
            setattr(_CollectorActor, name, control(getattr(_CollectorActor, name)))
        _REMOTE_ACTOR = ray.remote(concurrency_groups={"control": 1})(_CollectorActor)  # type: ignore[call-overload]
    return _REMOTE_ACTOR


def _is_actor_death(error: BaseException) -> bool:
    import ray.exceptions as rex

    return isinstance(error, (rex.RayActorError, rex.ActorUnavailableError))


def _wait_for_exit(pids: Sequence[int], timeout: float = 30.0) -> None:
    """Waits until the processes `pids` (on this host) have exited, at most `timeout` s.

    Their temporary files are settled only then (a process being killed may
    still publish or start a file)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                break
            time.sleep(0.05)


def _recover_after_death(root_dir: str, pid: int) -> list[str]:
    """Publishes the complete episodes a dead collector process left under `root_dir`,
    removes its other temporaries. Returns the published paths."""
    published = []
    marker = f".tmp-{pid}-"
    for directory, _, names in os.walk(root_dir):
        if any(marker in n and is_temporary_path(n) for n in names):
            published += recover_replay_directory(directory)
    for path in remove_temporaries(root_dir, [pid]):
        logger.warning("Removed the partial file %s of a dead collector.", path)
    return published


class RayCollector:
    """Collects with Ray actors: `collect` (the `Collector` protocol) and `start` (continuous).

    Args:
      num_actors: actors to start; None: one per shard.
      num_cpus_per_actor: the CPU share Ray reserves per actor (fractions share a core).
      max_restarts: how often Ray restarts a dead actor (-1: always).
      address: a Ray cluster to connect to when Ray is not connected yet (None:
        a local instance, see `ray_session`).
      num_cpus: CPUs of a local instance started here (default `default_num_cpus`).
      num_threads: torch threads per actor.
      show_progress: a tqdm bar over the episodes (`collect`).
      poll_secs: how often the driver looks at the actors.
      description: the progress bar's label.
    """

    def __init__(
        self,
        num_actors: int | None = None,
        num_cpus_per_actor: float = 0.5,
        max_restarts: int = -1,
        address: str | None = None,
        num_cpus: int | None = None,
        num_threads: int = 1,
        show_progress: bool = True,
        poll_secs: float = 0.2,
        description: str = "collect",
    ) -> None:
        if num_actors is not None and num_actors < 1:
            raise ValueError(f"RayCollector: num_actors must be >= 1, got {num_actors}.")
        if num_cpus_per_actor <= 0:
            raise ValueError(
                f"RayCollector: num_cpus_per_actor must be > 0, got {num_cpus_per_actor}."
            )
        self.num_actors = num_actors
        self.num_cpus_per_actor = float(num_cpus_per_actor)
        self.max_restarts = max_restarts
        self.address = address
        self.num_cpus = num_cpus
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.poll_secs = poll_secs
        self.description = description
        self.pids: list[int] = []

    # ------------------------------------------------------------- actors
    def _start_actors(self, count: int) -> list[Any]:
        import ray

        available = ray.cluster_resources().get("CPU", 0.0)
        needed = count * self.num_cpus_per_actor
        if needed > available + 1e-9:
            raise CollectError(
                f"RayCollector: {count} actors x {self.num_cpus_per_actor} CPU need {needed:g} "
                f"CPUs; the Ray cluster has {available:g}. Lower num_cpus_per_actor or start "
                "Ray with more num_cpus."
            )
        actor_class = _remote_actor_class()
        actors = [
            actor_class.options(
                num_cpus=self.num_cpus_per_actor,
                max_restarts=self.max_restarts,
                max_task_retries=0,
                name=None,
            ).remote(self.num_threads)
            for _ in range(count)
        ]
        self.pids = list(ray.get([a.pid.remote() for a in actors]))
        return actors

    @staticmethod
    def _kill(actors: Sequence[Any]) -> None:
        import ray

        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)

    # ------------------------------------------------------------- finite
    def collect(self, collect_fn: CollectFn, shards: Sequence[CollectShard]) -> CollectReport:
        """Runs `collect_fn` on every shard on the actors; raises CollectError on any failure."""
        shards = ordered_shards(shards, "RayCollector")
        if not shards:
            raise ValueError("RayCollector.collect needs at least one shard.")
        with ray_session(self.address, self.num_cpus):
            return self._collect(collect_fn, shards)

    def _collect(self, collect_fn: CollectFn, shards: Sequence[CollectShard]) -> CollectReport:
        import ray

        count = min(self.num_actors or len(shards), len(shards))
        start = time.perf_counter()
        actors = self._start_actors(count)
        refs = {
            actors[s.index % count].run.remote(collect_fn, s): s.index for s in shards
        }  # each actor runs its shards one at a time, in submission order
        outcomes: dict[int, dict[str, EnvRunResult]] = {}
        errors: dict[int, str] = {}
        dead: dict[int, int] = {}  # shard index -> pid of the actor that died running it
        total = sum(s.num_episodes for s in shards)
        try:
            with tqdm(
                total=total,
                desc=f"{self.description} ({count} Ray actors)",
                unit="ep",
                disable=not self.show_progress,
            ) as bar:
                pending = list(refs)
                while pending and not errors and not dead:
                    ready, pending = ray.wait(pending, num_returns=1, timeout=self.poll_secs)
                    for ref in ready:
                        index = refs[ref]
                        try:
                            outcomes[index] = ray.get(ref)
                        except Exception as e:
                            if _is_actor_death(e):
                                dead[index] = self.pids[index % count]
                            else:
                                errors[index] = str(e)
                    if self.show_progress:
                        bar.update(self._episodes_done(actors) - bar.n)
        finally:
            self._kill(actors)  # finished ones exit; running ones are stopped
            _wait_for_exit(self.pids)
            stopped = [p for i, p in enumerate(self.pids) if i not in outcomes]
            for root in {s.root_dir for s in shards}:
                for path in remove_temporaries(root, set(stopped) | set(dead.values())):
                    logger.warning("Removed the partial file %s of a stopped collector.", path)
        elapsed = time.perf_counter() - start
        if errors or dead or len(outcomes) != len(shards):
            roots = sorted({s.root_dir for s in shards})
            detail = [f"collector {i} failed:\n{text}" for i, text in sorted(errors.items())]
            detail += [
                f"collector {i} (Ray actor {i % count}, pid {pid}) died (killed, or out of "
                "memory); its shard is not run again (it had published episodes)"
                for i, pid in sorted(dead.items())
            ]
            detail += [
                f"collector {s.index} was stopped after another collector failed"
                for s in shards
                if s.index not in outcomes and s.index not in errors and s.index not in dead
            ]
            raise CollectError(
                f"Collection into {', '.join(roots)} failed; the files published so far hold "
                "complete episodes, partial ones were removed.\n" + "\n".join(detail)
            )
        report = CollectReport(
            shards=list(shards), results=[outcomes[s.index] for s in shards], wall_secs=elapsed
        )
        check_report(report)
        return report

    def _episodes_done(self, actors: Sequence[Any]) -> int:
        import ray

        refs = [a.progress.remote() for a in actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.poll_secs)
        total = 0
        for ref in ready:
            with contextlib.suppress(Exception):
                total += int(ray.get(ref))
        return total

    # --------------------------------------------------------- continuous
    def start(
        self, loop_fn: ContinuousCollectFn, shards: Sequence[CollectShard]
    ) -> ContinuousCollection:
        """Starts ``loop_fn(shard, context)`` on one actor per shard; Ray must be connected
        (`ray_session`). Returns the running collection; `ContinuousCollection.stop` ends it."""
        import ray

        if not ray.is_initialized():
            raise CollectError(
                "RayCollector.start needs a connected Ray (use t2r.collect.ray_collector."
                "ray_session)."
            )
        if self.num_actors is not None and self.num_actors != len(shards):
            raise ValueError(
                f"RayCollector.start runs one actor per shard: num_actors={self.num_actors}, "
                f"{len(shards)} shards."
            )
        actors = self._start_actors(len(shards))
        return ContinuousCollection(actors, loop_fn, list(shards), list(self.pids))


class ContinuousCollection:
    """Actors running ``loop_fn`` until `stop`; `poll` restarts the loop of a dead actor.

    Use as a context manager (``with collector.start(...) as running:``) so that
    the actors are stopped whatever happens.
    """

    def __init__(
        self,
        actors: list[Any],
        loop_fn: ContinuousCollectFn,
        shards: list[CollectShard],
        pids: list[int],
    ) -> None:
        self._actors = actors
        self._loop_fn = loop_fn
        self._shards = shards
        self._attempts = [0] * len(actors)
        self._pids: list[int | None] = list(pids)
        self._finished: list[dict[str, Any]] = [_zero_counts() for _ in actors]
        self._last: list[dict[str, Any]] = [_zero_counts() for _ in actors]
        self._refs: list[Any] = [
            a.run_loop.remote(loop_fn, s, 0) for a, s in zip(actors, shards, strict=True)
        ]
        self.deaths: list[tuple[int, int | None, int]] = []  # (actor, dead pid, attempt)
        self.recovered: list[str] = []
        self._stopped = False

    @property
    def shards(self) -> list[CollectShard]:
        return list(self._shards)

    @property
    def pids(self) -> list[int | None]:
        """The current process id of each actor (None while it restarts)."""
        return list(self._pids)

    def poll(self, timeout: float = 5.0) -> list[ActorStatus]:
        """Restarts the loop of each actor that died, raises CollectError for one that
        raised, and returns every actor's status."""
        import ray

        for i, ref in enumerate(self._refs):
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            try:
                final = ray.get(ref)
            except Exception as e:
                if not _is_actor_death(e):
                    raise CollectError(
                        f"Continuous collector {i} (pid {self._pids[i]}) failed:\n{e}"
                    ) from e
                self._restart(i)
            else:
                if not self._stopped:
                    raise CollectError(
                        f"Continuous collector {i}: loop_fn returned before it was asked to stop."
                    )
                self._last[i] = final
        return self._statuses(timeout)

    def _restart(self, i: int) -> None:

        dead_pid = self._pids[i]
        self.deaths.append((i, dead_pid, self._attempts[i]))
        logger.warning(
            "Collector actor %d (pid %s, attempt %d) died; Ray restarts it.",
            i,
            dead_pid,
            self._attempts[i],
        )
        _add_counts(self._finished[i], self._last[i])
        self._last[i] = _zero_counts()
        self._attempts[i] += 1
        self._pids[i] = None
        actor = self._actors[i]
        self._pids[i] = _restarted_pid(actor)
        if dead_pid is not None:
            _wait_for_exit([dead_pid])
            published = _recover_after_death(self._shards[i].root_dir, dead_pid)
            self.recovered += published
            for path in published:
                logger.warning("Published the complete episodes of the dead collector: %s", path)
        self._refs[i] = actor.run_loop.remote(self._loop_fn, self._shards[i], self._attempts[i])

    def _statuses(self, timeout: float) -> list[ActorStatus]:
        import ray

        refs = [a.counts.remote() for a in self._actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        ready_set = set(ready)
        statuses = []
        for i, ref in enumerate(refs):
            alive = ref in ready_set
            if alive:
                try:
                    counts = ray.get(ref)
                except Exception:
                    alive = False
                else:
                    if counts is not None and counts["attempt"] == self._attempts[i]:
                        self._last[i] = counts
            total = dict(self._finished[i])
            _add_counts(total, self._last[i])
            statuses.append(
                ActorStatus(
                    index=i,
                    pid=self._pids[i],
                    attempt=self._attempts[i],
                    episodes=int(total["episodes"]),
                    transitions=int(total["transitions"]),
                    reward_sum=float(total["reward_sum"]),
                    global_step=int(self._last[i]["global_step"]),
                    alive=alive,
                    attempt_episodes=int(self._last[i]["episodes"]),
                )
            )
        return statuses

    def stop(self, timeout: float = 60.0) -> list[ActorStatus]:
        """Asks every loop to finish (each publishes what it wrote), waits up to
        `timeout` seconds, then kills the actors; returns the final statuses."""
        import ray

        if self._stopped:
            return self._statuses(0.0)
        self._stopped = True
        for actor in self._actors:
            with contextlib.suppress(Exception):
                actor.stop.remote()
        deadline = time.monotonic() + timeout
        for i, ref in enumerate(self._refs):
            try:
                self._last[i] = ray.get(ref, timeout=max(deadline - time.monotonic(), 0.01))
            except Exception as e:  # died or did not finish in time: killed below
                logger.warning("Collector actor %d did not stop cleanly: %s", i, e)
        statuses = self._statuses(1.0)
        RayCollector._kill(self._actors)
        _wait_for_exit([p for p in self._pids if p is not None])
        for i, shard in enumerate(self._shards):
            pid = self._pids[i]
            if pid is not None:
                with contextlib.suppress(OSError):
                    self.recovered += _recover_after_death(shard.root_dir, pid)
        return statuses

    def __enter__(self) -> ContinuousCollection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _restarted_pid(actor: Any, timeout: float = 300.0) -> int:
    """The pid of `actor` once Ray has restarted it (calls fail while it restarts)."""
    import ray
    import ray.exceptions as rex

    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(ray.get(actor.pid.remote(), timeout=max(deadline - time.monotonic(), 1)))
        except rex.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _zero_counts() -> dict[str, Any]:
    return {"episodes": 0, "transitions": 0, "reward_sum": 0.0, "global_step": -1}


def _add_counts(total: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key in ("episodes", "transitions", "reward_sum"):
        total[key] += more.get(key, 0)
    total["global_step"] = max(total["global_step"], more.get("global_step", -1))
