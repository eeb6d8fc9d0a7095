"""The whole QT-Opt loop, tiny: Ray collectors, the Bellman updater, a torchrun learner,
the evaluator. It runs to the end, or stops on Ctrl-C, leaving no process behind and
no partial or duplicated episode in the replay."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t2r.data import read_tfrecord
from t2r.research.qtopt.transitions import parse_transitions
from tests.needs import needs_module

needs_module("ray")
needs_module("mujoco")

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGE_SIZE = 16

DRIVER = f"""
import json, sys
from t2r.research.qtopt import loop
options = dict(
    collectors=1, learners=1, batch_size=4, image_size={IMAGE_SIZE}, max_episode_steps=3,
    network="tiny", cem_iters=2, cem_samples=8, num_elites=2, export_every=2,
    checkpoint_every=2, eval_episodes=2, random_eval_episodes=2, episodes_per_round=1,
    poll_secs=1.0, ray_num_cpus=1,
)
options.update(json.loads(sys.argv[2]))
summary = loop.run_qtopt(loop.QTOptConfig(output_dir=sys.argv[1], **options))
print("SUMMARY", summary["interrupted"], summary["final"].get("learner_step"))
"""


def _start(output: Path, options: dict) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(output), json.dumps(options)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a command in a terminal
    )


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _watch(process: subprocess.Popen[str], until, timeout: float = 900.0) -> set[int]:
    """Notes every descendant of `process` until `until()` holds or it exits."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while process.poll() is None and not until():
        seen |= _descendants(process.pid)
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the loop hung")
        time.sleep(0.5)
    return seen | _descendants(process.pid)


@pytest.fixture
def started():
    """Starts drivers; kills what is left of them (their process group) after the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(output: Path, **options) -> subprocess.Popen[str]:
        processes.append(_start(output, options))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _no_orphans(seen: set[int], spare: tuple[bytes, ...] = ()) -> None:
    """Every process in `seen` is gone within a minute, except those whose command line
    starts with one of `spare` (killed here, so that nothing is left)."""
    deadline = time.monotonic() + 60
    spared = {p for p in seen if _cmdline(p).startswith(spare)} if spare else set()
    while _alive(seen - spared) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _alive(spared):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = _alive(seen - spared)
    names = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left}
    assert not left, f"processes left behind: {names}"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_replay(output: Path) -> None:
    """Whole episodes only, each once; each labelled file mirrors its replay file."""
    replay = output / "replay" / "policy_collect"
    hidden = [n for d in (replay, output / "labelled") for n in os.listdir(d) if n.startswith(".")]
    assert hidden == []
    replay_files = {p.name: p for p in replay.glob("*.tfrecord")}
    assert replay_files
    seen = set()
    for path in replay_files.values():
        records = list(read_tfrecord(str(path)))
        batch = parse_transitions(records, IMAGE_SIZE, decode_images=False)
        done = batch["done"].reshape(-1).tolist()
        assert done[-1] == 1.0  # the file ends with an episode's last step
        for record in records:
            assert record not in seen
            seen.add(record)
    for path in (output / "labelled").glob("*.tfrecord"):
        assert path.name in replay_files
        labelled = parse_transitions(list(read_tfrecord(str(path))), IMAGE_SIZE, labelled=True)
        assert len(labelled["target_q"]) == len(list(read_tfrecord(str(replay_files[path.name]))))


@pytest.mark.slow
def test_the_loop_runs_to_the_end_and_leaves_no_process(tmp_path, started):
    output = tmp_path / "qtopt"
    # Two collectors (no episode twice across them), two updaters, clipped double Q.
    process = started(output, steps=4, collectors=2, updaters=2, clipped_double_q=True)
    seen = _watch(process, lambda: False)
    out = process.stdout.read() if process.stdout else ""
    assert process.wait() == 0, out[-4000:]
    assert "SUMMARY False 4" in out, out[-4000:]
    assert "2 Bellman updater(s) (clipped double Q)" in out, out[-4000:]
    summary = json.loads((output / "summary.json").read_text())
    assert [e["step"] for e in summary["evals"]][-1] == 4  # the final export was evaluated
    assert summary["random_success"] != ""
    rows = _rows(output / "progress.csv")
    assert rows and int(rows[-1]["learner_step"]) == 4 and int(rows[-1]["episodes"]) > 0
    assert int(rows[-1]["labelled_transitions"]) > 0
    assert (output / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # evals.csv: per export, how its greedy episodes ended and the critic's first Q.
    evals = _rows(output / "evals.csv")
    assert [int(r["step"]) for r in evals][-1] == 4
    for row in evals:
        assert 1 <= float(row["mean_length"]) <= 3  # max_episode_steps
        ended = float(row["terminated_fraction"]) + float(row["out_of_steps_fraction"])
        assert ended == pytest.approx(1.0)
        assert math.isfinite(float(row["first_q"]))
    _check_replay(output)
    assert any(seen), "the loop started no process"
    _no_orphans(seen)


@pytest.mark.slow
def test_ctrl_c_stops_ray_and_torchrun(tmp_path, started):
    output = tmp_path / "qtopt"
    process = started(output, steps=100_000)

    def learner_running() -> bool:
        rows = _rows(output / "progress.csv") if (output / "progress.csv").exists() else []
        return bool(rows) and int(rows[-1]["episodes"]) > 0

    seen = _watch(process, learner_running)
    assert process.poll() is None, process.stdout.read() if process.stdout else ""
    commands = [Path(f"/proc/{p}/cmdline").read_bytes() for p in _alive(seen)]
    assert any(b"torch.distributed.run" in c for c in commands)  # torchrun was up
    assert any(b"raylet" in c for c in commands)  # and Ray
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the foreground process group
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out[-4000:]
    assert "SUMMARY True" in out, out[-4000:]
    assert json.loads((output / "summary.json").read_text())["interrupted"] is True
    assert (output / "success.png").exists() and (output / "progress.csv").exists()
    _check_replay(output)
    _no_orphans(seen)


@pytest.mark.slow
def test_a_sigkilled_driver_leaves_no_process(tmp_path, started):
    """SIGKILL gives the driver no chance to stop anything: torchrun (its own session)
    dies with it by PR_SET_PDEATHSIG and stops its learner; Ray's processes share the
    driver's fate. Nothing is left after a bounded wait."""
    output = tmp_path / "qtopt"
    process = started(output, steps=100_000)

    def collecting_and_learning() -> bool:
        rows = _rows(output / "progress.csv") if (output / "progress.csv").exists() else []
        commands = [_cmdline(p) for p in _alive(_descendants(process.pid))]
        learner = any(b"t2r.research.qtopt.learner" in c for c in commands)
        return learner and bool(rows) and int(rows[-1]["episodes"]) > 0

    seen = _watch(process, collecting_and_learning)
    assert process.poll() is None, process.stdout.read() if process.stdout else ""
    commands = [_cmdline(p) for p in _alive(seen)]
    assert any(b"torch.distributed.run" in c for c in commands)  # torchrun was up,
    assert any(b"t2r.research.qtopt.learner" in c for c in commands)  # its learner too,
    assert any(b"raylet" in c for c in commands)  # and Ray
    os.kill(process.pid, signal.SIGKILL)  # the driver only, not its process group
    process.wait()
    # Ray's two per-node agents notice the raylet's death within seconds but exit only
    # after trying for 60 s to report it to the (dead) GCS (ray/_private/process_watcher.py,
    # publish_error_to_driver's timeout): idle, they are spared the minute's wait here.
    _no_orphans(seen, spare=(b"ray::DashboardAgent", b"ray::RuntimeEnvAgent"))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
