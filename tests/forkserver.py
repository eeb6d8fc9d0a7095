"""Real child processes that do not each pay for an interpreter start.

Tests that kill a training with SIGKILL and resume it need the training in
another process. Started as ``python -m ...`` each such process spends seconds
importing torch and t2r before its first step; here every child is forked from
one ``forkserver`` that imported them once for the whole test session, so a
child costs a fork. The child is still a separate process: it dies by the
signal, leaves its files as a crash would, and shares no memory with the test.

A forkserver child inherits the environment and working directory the server
started with (the first call in the session), not the test's current ones:
pass absolute paths, and anything else as arguments.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported once by the server; the first call in a session decides (later
# calls reuse the running server whatever they would have preloaded). A
# training's first step imports more than `import t2r.train` does: TensorBoard's
# writer, and torch.use_deterministic_algorithms imports torch._inductor (~3 s).
PRELOAD = [
    "torch",
    "torch._inductor.config",
    "torch.utils.tensorboard",
    "t2r.train",
    "t2r.data",
    "tests.train.models",
]


@dataclass
class Exited:
    returncode: int  # as subprocess reports it: -N for death by signal N
    output: str  # the child's stdout and stderr, interleaved


def context() -> Any:
    """The session's forkserver context (the server starts with the first child)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _child(
    start_method: str, output: str, target: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    """Runs target(*args) as in a fresh interpreter: with the platform's default
    start method (a forkserver child's would be "forkserver", so DataLoader
    workers would start as fresh interpreters) and file descriptors 1 and 2
    (and sys.stdout/stderr, and so logging) writing to `output`."""
    multiprocessing.set_start_method(start_method, force=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    try:
        target(*args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def run(target: Callable[..., Any], *args: Any, output: Path, timeout: float = 300) -> Exited:
    """target(*args) in a forked child; waits for it (kills it past `timeout`).

    `target` must be a module-level function (the server imports it by name).
    The child's output replaces the file `output` and is returned.
    """
    start_method = multiprocessing.get_start_method()
    process = context().Process(target=_child, args=(start_method, str(output), target, args))
    process.start()
    process.join(timeout=timeout)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError(f"{target.__name__}{args} ran past {timeout} s; output in {output}")
    text = Path(output).read_text() if Path(output).exists() else ""
    return Exited(int(process.exitcode), text)
