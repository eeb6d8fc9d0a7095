"""Parallel collection: several collector processes writing into one root directory.

A collection run is split into `CollectShard`\\ s (`split_shards`): plain,
picklable descriptions of one worker's share (its index, episode count, seed
and root directory). A `Collector` runs a *collect function* on every shard
and returns a `CollectReport`:

``collect_fn(shard, on_episode) -> {tag: EnvRunResult}``

runs in the worker (it builds its own env and policy from the shard, usually
through `collect_eval_loop` / `run_env`, and calls ``on_episode()`` after each
episode for progress). It must be a module-level function (or a
``functools.partial`` of one), so that a spawned process, or later a Ray
actor, can import it. `ProcessCollector` runs the shards in ``spawn``
processes; a Ray-based collector implements the same `Collector.collect`.

Guarantees (checked by `ProcessCollector`, tested in
``tests/collect/test_parallel.py``):

* **No lost or duplicated episodes.** Shares sum to the requested total; after
  a successful run every shard's ``'collect'`` result holds exactly its share,
  and no record file is reported by two shards (`check_report`). A run that
  cannot promise this raises `CollectError`; it never returns fewer episodes.
* **A killed worker's partial file is never visible.** Writers publish files by
  atomic rename (`t2r.collect.TFRecordReplayWriter`); what a worker was writing
  when it died stays under a temporary name that readers skip, and the parent
  removes those temporaries (by the dead worker's pid) from the root directory.
  Files a worker published before it died hold complete episodes and stay.
* **One failure stops the run.** When a worker raises or dies, the others are
  terminated (their temporaries removed too) and `CollectError` names the
  worker, its exit code and its traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from tqdm.auto import tqdm

from t2r.atomic import is_temporary_path
from t2r.collect.rollouts import EnvRunResult

__all__ = [
    "CollectError",
    "CollectFn",
    "CollectReport",
    "CollectShard",
    "Collector",
    "ProcessCollector",
    "check_report",
    "split_shards",
]

logger = logging.getLogger(__name__)


class CollectError(RuntimeError):
    """A collection run failed: a worker raised or died, or episodes went missing."""


@dataclasses.dataclass(frozen=True)
class CollectShard:
    """One worker's share of a collection run (plain data: it crosses process boundaries).

    Attributes:
      index: the worker's number, 0..n-1 (use it as the collect-eval ``task``).
      num_episodes: episodes this worker collects.
      seed: this worker's seed (envs, policies), distinct per shard.
      root_dir: the directory all workers write into.
    """

    index: int
    num_episodes: int
    seed: int
    root_dir: str


class CollectFn(Protocol):
    """Runs one shard in a worker: ``collect_fn(shard, on_episode) -> {tag: EnvRunResult}``.

    The ``'collect'`` entry (when present) must hold exactly ``shard.num_episodes``
    episodes; other tags (e.g. ``'eval'``) are passed through.
    """

    def __call__(
        self, shard: CollectShard, on_episode: Callable[[], None]
    ) -> Mapping[str, EnvRunResult]: ...


@dataclasses.dataclass
class CollectReport:
    """What a collection run did.

    Attributes:
      shards: the shards, in index order.
      results: per shard (same order), what its collect function returned.
      wall_secs: wall time from the first start to the last join.
    """

    shards: list[CollectShard]
    results: list[dict[str, EnvRunResult]]
    wall_secs: float

    def tagged(self, tag: str) -> list[EnvRunResult]:
        """The results of `tag` ('collect', 'eval', ...) of the shards that have one."""
        return [r[tag] for r in self.results if tag in r]

    @property
    def num_episodes(self) -> int:
        """Episodes collected under the 'collect' tag, over all shards."""
        return sum(r.num_episodes for r in self.tagged("collect"))

    @property
    def num_transitions(self) -> int:
        return sum(r.num_transitions for r in self.tagged("collect"))

    @property
    def record_files(self) -> list[str]:
        """Every record file the shards published, all tags."""
        return [path for r in self.results for result in r.values() for path in result.record_files]


class Collector(Protocol):
    """Runs `collect_fn` on every shard, in parallel; `ProcessCollector`, later Ray."""

    def collect(self, collect_fn: CollectFn, shards: Sequence[CollectShard]) -> CollectReport: ...


def split_shards(
    num_episodes: int, num_workers: int, root_dir: str | os.PathLike[str], seed: int = 0
) -> list[CollectShard]:
    """`num_workers` shards that share `num_episodes` as evenly as possible.

    Shard ``i`` gets ``num_episodes // num_workers`` episodes, one more for
    ``i < num_episodes % num_workers``, and the seed ``seed * 1000 + 1 + i``.
    """
    if num_workers < 1:
        raise ValueError(f"split_shards: num_workers must be >= 1, got {num_workers}.")
    if num_episodes < num_workers:
        raise ValueError(
            f"split_shards: {num_workers} workers for {num_episodes} episodes; use at most one "
            "worker per episode."
        )
    root = os.fspath(root_dir)
    return [
        CollectShard(
            index=i,
            num_episodes=num_episodes // num_workers + (i < num_episodes % num_workers),
            seed=seed * 1000 + 1 + i,
            root_dir=root,
        )
        for i in range(num_workers)
    ]


def check_report(report: CollectReport) -> None:
    """Raises CollectError unless every shard collected its share and no file is shared."""
    problems = []
    for shard, result in zip(report.shards, report.results, strict=True):
        collected = result.get("collect")
        if collected is not None and collected.num_episodes != shard.num_episodes:
            problems.append(
                f"shard {shard.index} collected {collected.num_episodes} episodes, "
                f"expected {shard.num_episodes}"
            )
    owners: dict[str, int] = {}
    for shard, result in zip(report.shards, report.results, strict=True):
        for path in {p for r in result.values() for p in r.record_files}:
            if path in owners:
                problems.append(f"{path} is reported by shards {owners[path]} and {shard.index}")
            owners[path] = shard.index
            if not os.path.isfile(path):
                problems.append(f"shard {shard.index} reported {path}, which does not exist")
    if problems:
        raise CollectError("Collection lost or duplicated episodes: " + "; ".join(problems) + ".")


def ordered_shards(shards: Sequence[CollectShard], collector: str) -> list[CollectShard]:
    """`shards` sorted by index; raises ValueError unless the indices are 0..n-1."""
    shards = sorted(shards, key=lambda s: s.index)
    if [s.index for s in shards] != list(range(len(shards))):
        raise ValueError(
            f"{collector}: shard indices must be 0..{len(shards) - 1}, got "
            f"{[s.index for s in shards]}."
        )
    return shards


def remove_temporaries(root_dir: str | os.PathLike[str], pids: Iterable[int]) -> list[str]:
    """Removes the temporary files (`t2r.atomic.temporary_path_for`) of `pids` under `root_dir`.

    Only for processes known to be dead: their partial files can never be published.
    Returns the removed paths.
    """
    markers = tuple(f".tmp-{pid}-" for pid in pids)
    removed = []
    for directory, _, names in os.walk(root_dir):
        for name in names:
            path = os.path.join(directory, name)
            if is_temporary_path(path) and any(m in name for m in markers):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append(path)
    return removed


def _worker_main(
    collect_fn: CollectFn, shard: CollectShard, counter: Any, results: Any, num_threads: int
) -> None:
    """A collector process: runs `collect_fn` on `shard`, reports through `results`."""
    try:
        import torch

        torch.set_num_threads(num_threads)

        def on_episode() -> None:
            with counter.get_lock():
                counter.value += 1

        outcome = dict(collect_fn(shard, on_episode))
        results.put((shard.index, "ok", outcome))
    except BaseException:
        results.put((shard.index, "error", traceback.format_exc()))
        raise


class ProcessCollector:
    """Runs each shard in its own ``spawn`` process (see the module docstring).

    Args:
      show_progress: a tqdm bar over the episodes of all workers.
      expected_episodes: the bar's total (default: the shards' episodes).
      num_threads: torch threads per worker.
      poll_secs: how often the parent looks at the workers.
      description: the progress bar's label.
    """

    def __init__(
        self,
        show_progress: bool = True,
        expected_episodes: int | None = None,
        num_threads: int = 1,
        poll_secs: float = 0.2,
        description: str = "collect",
    ) -> None:
        self.show_progress = show_progress
        self.expected_episodes = expected_episodes
        self.num_threads = num_threads
        self.poll_secs = poll_secs
        self.description = description
        self.pids: list[int] = []

    def collect(self, collect_fn: CollectFn, shards: Sequence[CollectShard]) -> CollectReport:
        """Runs `collect_fn` on every shard; raises CollectError on any failure."""
        shards = ordered_shards(shards, "ProcessCollector")
        context = multiprocessing.get_context("spawn")
        counter = context.Value("l", 0)
        results = context.Queue()
        processes = [
            context.Process(
                target=_worker_main,
                name=f"t2r-collector-{shard.index}",
                args=(collect_fn, shard, counter, results, self.num_threads),
            )
            for shard in shards
        ]
        start = time.perf_counter()
        outcomes: dict[int, dict[str, EnvRunResult]] = {}
        errors: dict[int, str] = {}
        total = self.expected_episodes or sum(s.num_episodes for s in shards)
        try:
            for process in processes:
                process.start()
            self.pids = [p.pid for p in processes if p.pid is not None]
            with tqdm(
                total=total,
                desc=f"{self.description} ({len(shards)} processes)",
                unit="ep",
                disable=not self.show_progress,
            ) as progress:
                self._wait(processes, results, outcomes, errors, progress, counter)
            if len(outcomes) == len(processes):
                for process in processes:  # all reported: let them exit on their own
                    process.join(timeout=60.0)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                if process.pid is not None:
                    process.join()
            dead = [p.pid for p in processes if p.pid is not None and p.exitcode != 0]
            roots = {s.root_dir for s in shards}
            for root in roots:
                for path in remove_temporaries(root, dead):
                    logger.warning("Removed the partial file %s of a stopped collector.", path)
        elapsed = time.perf_counter() - start
        failed = {
            i: p.exitcode for i, p in enumerate(processes) if p.exitcode != 0 and i not in outcomes
        }
        if errors or failed or len(outcomes) != len(shards):
            detail = [f"collector {i} failed:\n{text}" for i, text in sorted(errors.items())]
            detail += [
                f"collector {i} ({processes[i].name}, pid {processes[i].pid}) exited with code "
                f"{code}" + (" (stopped after another collector failed)" if code == -15 else "")
                for i, code in sorted(failed.items())
                if i not in errors
            ]
            raise CollectError(
                f"Collection into {', '.join(sorted(roots))} failed; the files published so far "
                "hold complete episodes, partial ones were removed.\n" + "\n".join(detail)
            )
        report = CollectReport(
            shards=list(shards),
            results=[outcomes[s.index] for s in shards],
            wall_secs=elapsed,
        )
        check_report(report)
        return report

    def _wait(
        self,
        processes: list[Any],
        results: Any,
        outcomes: dict[int, dict[str, EnvRunResult]],
        errors: dict[int, str],
        progress: Any,
        counter: Any,
    ) -> None:
        """Gathers results until every worker reported, or one failed."""
        while len(outcomes) < len(processes) and not errors:
            try:
                index, status, payload = results.get(timeout=self.poll_secs)
            except queue.Empty:
                # A worker that died without reporting (killed) ends the run; results
                # it put before dying are still read first (the queue is drained above).
                dead = [
                    i
                    for i, p in enumerate(processes)
                    if i not in outcomes and not p.is_alive() and p.exitcode is not None
                ]
                if dead and results.empty():
                    return
            else:
                if status == "ok":
                    outcomes[index] = payload
                else:
                    errors[index] = payload
            progress.update(counter.value - progress.n)
        progress.update(counter.value - progress.n)
