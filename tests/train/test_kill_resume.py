"""Kill -9 at chosen points (after steps, inside checkpoint writes) -> exact resume.

The input's order is fixed by the batch index (`SeededInput`), and dropout makes
the RNG state matter, so an exact resume needs weights, optimizer, RNG and the
input position restored from a complete, intact checkpoint.
"""

from __future__ import annotations

from .kill_resume import kill_and_resume


def report(outcomes) -> str:
    lines = [f"{'kill point':>12} {'killed':>6} {'resumed from':>12} {'exact':>5}"]
    for o in outcomes:
        point = f"{o.point[0]} {o.point[1]}"
        lines.append(f"{point:>12} {o.killed!s:>6} {o.resumed_from:>12} {o.exact!s:>5}")
    exact = sum(o.exact for o in outcomes)
    killed = sum(o.killed for o in outcomes)
    lines.append(f"{exact}/{len(outcomes)} exact, {killed} killed")
    return "\n".join(lines)


def test_kill_inside_checkpoint_writes_and_after_a_step_resumes_exactly(tmp_path):
    # Write event 12 falls inside the first checkpoint (between a temporary file
    # and its rename), 45 inside a later one. benchmarks/kill_resume.py runs 20
    # random points.
    points = [("step", 17), ("write", 12), ("write", 45)]
    outcomes = kill_and_resume(tmp_path, points)
    print(report(outcomes))
    assert all(o.killed for o in outcomes), report(outcomes)
    assert all(o.exact for o in outcomes), report(outcomes)
    # A kill inside a checkpoint write leaves a temporary directory; the resumed
    # run's next checkpoint removes it.
    assert [o.leftovers for o in outcomes] == [0, 0, 0], report(outcomes)
