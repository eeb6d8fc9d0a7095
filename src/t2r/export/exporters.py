"""Exporters that `train_eval_model` calls after each evaluation (Tensor2Robot's).

`train_eval_model(create_exporters_fn=create_default_exporters)` exports the
latest model after every evaluation into
``model_dir/export/latest_exporter_numpy/<global step>/`` and the best one so
far (smallest eval loss by default) into ``model_dir/export/best_exporter_numpy/``,
the directory names T2R used, so collectors configured for T2R find them.
Without an eval input the loop calls exporters after each checkpoint with
``eval_metrics=None``.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from t2r.export import layout
from t2r.export.writer import program_builder, write_snapshot

if TYPE_CHECKING:
    from t2r.models import AbstractT2RModel

logger = logging.getLogger(__name__)

EXPORT_SUBDIR = "export"

EvalResult = Mapping[str, float] | None
CompareFn = Callable[[EvalResult, EvalResult], bool]


def create_valid_result_smaller(result_key: str = "loss") -> CompareFn:
    """A compare_fn: the current result is better when `result_key` is smaller.

    Robust to missing keys, as Tensor2Robot's: when the best result so far
    lacks the key, any current result is better; when the current one lacks
    it, it is not.
    """

    def valid_result_smaller(best_eval_result: EvalResult, current_eval_result: EvalResult) -> bool:
        if not best_eval_result or result_key not in best_eval_result:
            return True
        if not current_eval_result or result_key not in current_eval_result:
            return False
        return best_eval_result[result_key] > current_eval_result[result_key]

    return valid_result_smaller


def create_valid_result_larger(result_key: str = "loss") -> CompareFn:
    """Like `create_valid_result_smaller`, for metrics where larger is better."""

    def valid_result_larger(best_eval_result: EvalResult, current_eval_result: EvalResult) -> bool:
        if not best_eval_result or result_key not in best_eval_result:
            return True
        if not current_eval_result or result_key not in current_eval_result:
            return False
        return best_eval_result[result_key] < current_eval_result[result_key]

    return valid_result_larger


def _json_metrics(metrics: EvalResult) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {str(k): float(v) for k, v in metrics.items()}


class AbstractExporter(abc.ABC):
    """Writes export versions of a model; implements `t2r.train.Exporter`.

    Args:
      name: the exporter's name, and its directory under ``model_dir/export/``.
      export_dir: where versions go instead of ``model_dir/export/<name>``.
      exports_to_keep: the newest versions kept (None keeps all).
      export_onnx: also write ``model.onnx`` when the model converts cleanly.
      program_format: ``'torch.export'`` (TorchScript when export fails) or
        ``'torchscript'``.
    """

    def __init__(
        self,
        name: str,
        export_dir: str | os.PathLike[str] | None = None,
        exports_to_keep: int | None = 5,
        export_onnx: bool = False,
        program_format: str = layout.TORCH_EXPORT,
    ) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"An exporter name must be a plain directory name, got {name!r}.")
        self._name = name
        self._export_dir = None if export_dir is None else Path(export_dir)
        self.exports_to_keep = exports_to_keep
        self.export_onnx = export_onnx
        self.program_format = program_format

    @property
    def name(self) -> str:
        return self._name

    def export_path(self, model_dir: str | os.PathLike[str]) -> Path:
        """The directory this exporter's versions go to."""
        if self._export_dir is not None:
            return self._export_dir
        return Path(model_dir) / EXPORT_SUBDIR / self._name

    def _write(
        self,
        t2r_model: AbstractT2RModel,
        model_dir: str | os.PathLike[str],
        global_step: int,
        eval_metrics: EvalResult,
    ) -> Path:
        snapshot = program_builder(t2r_model, self.program_format, self.export_onnx).snapshot(
            t2r_model, global_step
        )
        return write_snapshot(
            snapshot,
            self.export_path(model_dir),
            exports_to_keep=self.exports_to_keep,
            metadata={"exporter": self._name, "eval_metrics": _json_metrics(eval_metrics)},
        )

    @abc.abstractmethod
    def export(
        self,
        t2r_model: AbstractT2RModel,
        model_dir: str,
        global_step: int,
        eval_metrics: dict[str, float] | None,
    ) -> Path | None:
        """Exports (or not); returns the version's path, or None when nothing was written."""


class LatestExporter(AbstractExporter):
    """Exports every time it is called (Estimator's LatestExporter)."""

    def __init__(self, name: str = "latest_exporter", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)

    def export(
        self,
        t2r_model: AbstractT2RModel,
        model_dir: str,
        global_step: int,
        eval_metrics: dict[str, float] | None,
    ) -> Path:
        return self._write(t2r_model, model_dir, global_step, eval_metrics)


class BestExporter(AbstractExporter):
    """Exports when the eval result beats the best so far (Estimator's BestExporter).

    `compare_fn(best_eval_result, current_eval_result) -> bool` decides; the
    default is `create_valid_result_smaller(metric_key)` (or `..._larger` with
    `larger_is_better`). The best result survives restarts: it is read back
    from the eval metrics in the newest version's assets.

    Args:
      name: see `AbstractExporter`.
      compare_fn: overrides `metric_key` / `larger_is_better`.
      metric_key: the eval metric to compare.
      larger_is_better: whether larger values of `metric_key` are better.
      **kwargs: see `AbstractExporter`.
    """

    def __init__(
        self,
        name: str = "best_exporter",
        compare_fn: CompareFn | None = None,
        metric_key: str = "loss",
        larger_is_better: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        if compare_fn is None:
            factory = (
                create_valid_result_larger if larger_is_better else create_valid_result_smaller
            )
            compare_fn = factory(metric_key)
        self._compare_fn = compare_fn
        self._best_eval_result: EvalResult = None
        self._best_loaded_from: Path | None = None

    @property
    def best_eval_result(self) -> EvalResult:
        return self._best_eval_result

    def _maybe_load_best(self, export_path: Path) -> None:
        if self._best_loaded_from == export_path:
            return
        self._best_loaded_from = export_path
        newest = layout.latest_version(export_path)
        if newest is None:
            return
        try:
            metrics = newest.load_assets().metadata.get("eval_metrics")
        except Exception as e:  # unreadable assets: start from scratch
            logger.warning("Cannot read the best eval result from %s: %s", newest.path, e)
            return
        if metrics:
            self._best_eval_result = metrics
            logger.info("%s: best eval result so far %s (%s).", self.name, metrics, newest.path)

    def export(
        self,
        t2r_model: AbstractT2RModel,
        model_dir: str,
        global_step: int,
        eval_metrics: dict[str, float] | None,
    ) -> Path | None:
        export_path = self.export_path(model_dir)
        self._maybe_load_best(export_path)
        if self._best_eval_result is not None and not self._compare_fn(
            self._best_eval_result, eval_metrics
        ):
            logger.debug(
                "%s: %s is not better than %s.", self.name, eval_metrics, self._best_eval_result
            )
            return None
        path = self._write(t2r_model, model_dir, global_step, eval_metrics)
        self._best_eval_result = eval_metrics
        return path


def create_default_exporters(
    t2r_model: AbstractT2RModel,
    export_generator: Any = None,
    compare_fn: Callable[[], CompareFn] = create_valid_result_smaller,
    exports_to_keep: int | None = 5,
    export_onnx: bool = False,
) -> list[AbstractExporter]:
    """The exporters Tensor2Robot's train_eval_model used, for `create_exporters_fn`.

    Returns ``[BestExporter('best_exporter_numpy'), LatestExporter('latest_exporter_numpy')]``:
    T2R's numpy-receiver exporters (its ``tf_example`` receivers have no
    counterpart: t2r programs take tensors). `compare_fn` is a factory, as in
    T2R: ``compare_fn()`` gives ``(best, current) -> bool``. `export_generator`
    is accepted for signature compatibility and must be None.
    """
    del t2r_model  # the exporters receive the model at export time
    if export_generator is not None:
        raise ValueError(
            "t2r exporters take no export_generator: the program's inputs are the model's "
            "packing feature spec."
        )
    kwargs: dict[str, Any] = {"exports_to_keep": exports_to_keep, "export_onnx": export_onnx}
    return [
        BestExporter(name="best_exporter_numpy", compare_fn=compare_fn(), **kwargs),
        LatestExporter(name="latest_exporter_numpy", **kwargs),
    ]


def export_dirs(
    exporters: Sequence[AbstractExporter], model_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """``{exporter name: its export directory}`` for a model_dir."""
    return {e.name: e.export_path(model_dir) for e in exporters}
