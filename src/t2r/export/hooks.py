"""Exporting during training: Tensor2Robot's AsyncExportHookBuilder and TD3Hooks.

`AsyncExportHookBuilder` exports the model every `save_secs` seconds or
`save_steps` steps (or after every checkpoint) while training runs, so that
collectors pick up new policies. `TD3Hooks` does the same and also keeps a
second, *lagged* directory one version behind, for target networks.

Threading: the training thread only takes a snapshot (a CPU copy of the
weights, plus a trace the first time); writing the version (serializing the
program, safetensors, assets, rename, pruning, the lagged copy) runs on one
background thread. When the previous export is still being written, a due
export waits for the next step. `end()` exports the final weights and waits
for the writer. With ``background=False`` everything runs on the training
thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from t2r.export import layout
from t2r.export.program import ExportSnapshot
from t2r.export.writer import program_builder, write_snapshot
from t2r.train.hooks import Hook, HookBuilder

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel
    from t2r.train.checkpoints import Checkpoint

logger = logging.getLogger(__name__)


class LaggedExportDirectory:
    """Keeps `lagged_export_dir` one version behind `export_dir` (T2R's LaggedCheckpointListener).

    Call `after_export(version)` after each new version in `export_dir`: the
    first version is copied at once; later, the previous newest version is
    copied, so the lagged directory trails by one. On construction the lagged
    directory is brought in line with what `export_dir` already holds.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        lagged_export_dir: str | os.PathLike[str],
        num_versions: int | None = 3,
    ) -> None:
        self.export_dir = Path(export_dir)
        self.lagged_export_dir = Path(lagged_export_dir)
        self.num_versions = num_versions
        self.lagged_export_dir.mkdir(parents=True, exist_ok=True)
        versions = layout.list_versions(self.export_dir)
        lagged = layout.list_versions(self.lagged_export_dir)
        self._current: layout.ExportVersion | None = versions[-1] if versions else None
        self._lagged: int | None = lagged[-1].version if lagged else None
        if versions:
            target = versions[-2] if len(versions) > 1 else versions[-1]
            if self._lagged != target.version:
                self._copy(target)

    @property
    def lagged_version(self) -> int | None:
        return self._lagged

    def _copy(self, version: layout.ExportVersion) -> None:
        layout.copy_version(version, self.lagged_export_dir)
        self._lagged = version.version
        logger.info("Lagged export %s -> %s", version.path, self.lagged_export_dir)
        layout.prune_versions(self.lagged_export_dir, self.num_versions)

    def after_export(self, version: layout.ExportVersion) -> None:
        if self._current is None:
            self._copy(version)
        elif self._current.version != self._lagged and self._current.version != version.version:
            self._copy(self._current)
        self._current = version


class AsyncExportHook(Hook):
    """Exports `t2r_model` periodically during training; see `AsyncExportHookBuilder`."""

    def __init__(
        self,
        t2r_model: AbstractT2RModel,
        export_dir: str | os.PathLike[str],
        save_secs: float | None = 90.0,
        save_steps: int | None = None,
        num_versions: int | None = 3,
        lagged_export_dir: str | os.PathLike[str] | None = None,
        background: bool = True,
        export_onnx: bool = False,
        program_format: str = layout.TORCH_EXPORT,
    ) -> None:
        self._model = t2r_model
        self.export_dir = Path(export_dir)
        self.save_secs = save_secs
        self.save_steps = save_steps
        self.num_versions = num_versions
        self.lagged_export_dir = None if lagged_export_dir is None else Path(lagged_export_dir)
        self._lagged: LaggedExportDirectory | None = None
        self._builder = program_builder(t2r_model, program_format, export_onnx)
        self._executor = (
            concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="t2r-export")
            if background
            else None
        )
        self._pending: concurrent.futures.Future | None = None
        self._last_step: int | None = None
        self._last_time = time.monotonic()
        self.exported: list[Path] = []
        self.errors: list[BaseException] = []

    # ---------------------------------------------------------- hook calls
    def begin(self, global_step: int) -> None:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if self.lagged_export_dir is not None:
            self._lagged = LaggedExportDirectory(
                self.export_dir, self.lagged_export_dir, self.num_versions
            )
        self._last_step = global_step
        self._last_time = time.monotonic()

    def after_step(self, global_step: int, scalars: dict[str, float]) -> None:
        if self.save_secs is None and self.save_steps is None:
            return  # exports follow checkpoints
        last = self._last_step or 0
        due = (self.save_steps is not None and global_step - last >= self.save_steps) or (
            self.save_secs is not None and time.monotonic() - self._last_time >= self.save_secs
        )
        if due and not self._busy():
            self._export(global_step)

    def after_checkpoint(self, checkpoint: Checkpoint) -> None:
        if self.save_secs is None and self.save_steps is None:
            self.wait()
            self._export(checkpoint.global_step)

    def end(self, global_step: int) -> None:
        try:
            self.wait()
            if global_step != self._last_step:
                self._export(global_step)
                self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)

    # ------------------------------------------------------------ exports
    def _busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    def wait(self) -> None:
        """Blocks until the export being written (if any) is on disk."""
        if self._pending is not None:
            concurrent.futures.wait([self._pending])
            self._pending = None

    def _export(self, global_step: int) -> None:
        self._last_step = global_step
        self._last_time = time.monotonic()
        try:
            snapshot = self._builder.snapshot(self._model, global_step)
        except Exception as e:
            logger.exception("Export at step %d failed.", global_step)
            self.errors.append(e)
            return
        if self._executor is None:
            self._write(snapshot)
        else:
            self._pending = self._executor.submit(self._write, snapshot)

    def _write(self, snapshot: ExportSnapshot) -> None:
        try:
            path = write_snapshot(snapshot, self.export_dir, metadata={"exporter": "async"})
            if self._lagged is not None:
                self._lagged.after_export(layout.ExportVersion(path, int(path.name)))
            layout.prune_versions(self.export_dir, self.num_versions)
            self.exported.append(path)
        except Exception as e:  # logged, kept; training goes on
            logger.exception("Writing the export at step %d failed.", snapshot.global_step)
            self.errors.append(e)


class AsyncExportHookBuilder(HookBuilder):
    """Exports the model during training every `save_secs` or `save_steps` (T2R's name).

    Args:
      export_dir: where versions go; None means ``model_dir/export/async_export``.
      save_secs: seconds between exports (T2R's default 90).
      save_steps: steps between exports; with both None, export after every
        checkpoint.
      num_versions: newest versions kept.
      background: write versions on a background thread (see module docstring).
      export_onnx, program_format: see `t2r.export.AbstractExporter`.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str] | None = None,
        save_secs: float | None = 90.0,
        save_steps: int | None = None,
        num_versions: int | None = 3,
        background: bool = True,
        export_onnx: bool = False,
        program_format: str = layout.TORCH_EXPORT,
    ) -> None:
        self.export_dir = export_dir
        self.save_secs = save_secs
        self.save_steps = save_steps
        self.num_versions = num_versions
        self.background = background
        self.export_onnx = export_onnx
        self.program_format = program_format
        self.hooks: list[AsyncExportHook] = []

    def _lagged_dir(self, model_dir: Path) -> Path | None:
        return None

    def create_hooks(
        self, t2r_model: AbstractT2RModel, model_dir: str | os.PathLike[str]
    ) -> list[Hook]:
        export_dir = (
            Path(self.export_dir)
            if self.export_dir is not None
            else Path(model_dir) / "export" / "async_export"
        )
        hook = AsyncExportHook(
            t2r_model,
            export_dir,
            save_secs=self.save_secs,
            save_steps=self.save_steps,
            num_versions=self.num_versions,
            lagged_export_dir=self._lagged_dir(Path(model_dir)),
            background=self.background,
            export_onnx=self.export_onnx,
            program_format=self.program_format,
        )
        self.hooks.append(hook)
        return [hook]


class TD3Hooks(AsyncExportHookBuilder):
    """Exports to `export_dir` and keeps `lagged_export_dir` one version behind (T2R's TD3Hooks).

    See Fujimoto et al., "Addressing Function Approximation Error in
    Actor-Critic Methods" (TD3): collectors or learners read the lagged
    directory as the target network.

    Args:
      export_dir: the latest versions.
      lagged_export_dir: the versions one behind.
      batch_sizes_for_export: T2R's TF-Serving warm-up batch sizes; ignored.
      save_secs, save_steps, num_versions, background, export_onnx, program_format:
        see `AsyncExportHookBuilder`.
      use_preprocessed_features: must be False: t2r programs always include the
        preprocessor.
    """

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        lagged_export_dir: str | os.PathLike[str],
        batch_sizes_for_export: object = None,
        save_secs: float | None = 90.0,
        num_versions: int | None = 3,
        use_preprocessed_features: bool = False,
        save_steps: int | None = None,
        background: bool = True,
        export_onnx: bool = False,
        program_format: str = layout.TORCH_EXPORT,
    ) -> None:
        del batch_sizes_for_export
        if use_preprocessed_features:
            raise ValueError(
                "use_preprocessed_features=True is not supported: t2r programs include the "
                "preprocessor."
            )
        super().__init__(
            export_dir,
            save_secs=save_secs,
            save_steps=save_steps,
            num_versions=num_versions,
            background=background,
            export_onnx=export_onnx,
            program_format=program_format,
        )
        self.lagged_export_dir = lagged_export_dir

    def _lagged_dir(self, model_dir: Path) -> Path | None:
        return Path(self.lagged_export_dir)
