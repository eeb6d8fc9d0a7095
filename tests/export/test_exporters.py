"""Latest/best exporters, create_default_exporters in train_eval_model, export hooks."""

from __future__ import annotations

import itertools

import pytest
import torch

from t2r.export import (
    AsyncExportHookBuilder,
    BestExporter,
    LaggedExportDirectory,
    LatestExporter,
    TD3Hooks,
    create_default_exporters,
    create_valid_result_larger,
    create_valid_result_smaller,
    export_saved_model,
    latest_version,
    list_versions,
)
from t2r.train import seed_everything, train_eval_model
from tests.train.models import SeededInput

from .models import TinyModel


def _steps(export_dir) -> list[int]:
    return [v.version for v in list_versions(export_dir)]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyModel()


def test_compare_fns_are_robust_to_missing_keys():
    smaller = create_valid_result_smaller("loss")
    larger = create_valid_result_larger("acc")
    assert smaller(None, {"loss": 1.0}) and smaller({"other": 1.0}, {"loss": 1.0})
    assert smaller({"loss": 2.0}, {"loss": 1.0}) and not smaller({"loss": 1.0}, {"loss": 2.0})
    assert not smaller({"loss": 1.0}, {"other": 0.0}) and not smaller({"loss": 1.0}, None)
    assert smaller({}, None)  # no valid best yet: anything goes (T2R)
    assert larger({"acc": 0.5}, {"acc": 0.6}) and not larger({"acc": 0.6}, {"acc": 0.5})
    assert not larger({"acc": 0.6}, {"loss": 0.1})


def test_best_exporter_exports_only_improvements(tmp_path, tiny):
    exporter = BestExporter(exports_to_keep=None)
    exported = []
    for step, metrics in enumerate(
        [{"loss": 3.0}, {"loss": 2.0}, {"loss": 5.0}, {"accuracy": 1.0}, None, {"loss": 1.0}], 1
    ):
        if exporter.export(tiny, str(tmp_path), step, metrics) is not None:
            exported.append(step)
    assert exported == [1, 2, 6]
    assert _steps(tmp_path / "export" / "best_exporter") == [1, 2, 6]
    newest = latest_version(tmp_path / "export" / "best_exporter").load_assets()
    assert newest.metadata["eval_metrics"] == {"loss": 1.0}
    assert newest.metadata["exporter"] == "best_exporter"

    # A restarted run reads the best result back from the export.
    again = BestExporter(exports_to_keep=None)
    assert again.export(tiny, str(tmp_path), 7, {"loss": 1.5}) is None
    assert again.best_eval_result == {"loss": 1.0}
    assert again.export(tiny, str(tmp_path), 8, {"loss": 0.5}) is not None


def test_best_exporter_larger_is_better(tmp_path, tiny):
    exporter = BestExporter(metric_key="success", larger_is_better=True, export_dir=tmp_path)
    results = [
        exporter.export(tiny, "unused", s, {"success": v})
        for s, v in [(1, 0.2), (2, 0.1), (3, 0.9)]
    ]
    assert [r is not None for r in results] == [True, False, True]
    assert _steps(tmp_path) == [1, 3]


def test_latest_exporter_always_exports_and_keeps_the_newest(tmp_path, tiny):
    exporter = LatestExporter(exports_to_keep=2)
    for step in range(1, 5):
        exporter.export(tiny, str(tmp_path), step, None)
    assert _steps(exporter.export_path(tmp_path)) == [3, 4]
    assert exporter.export_path(tmp_path) == tmp_path / "export" / "latest_exporter"


def test_default_exporters_run_after_each_evaluation(tmp_path):
    seed_everything(0)
    model = TinyModel()
    train_eval_model(
        model,
        SeededInput(),
        input_generator_eval=SeededInput(),
        max_train_steps=20,
        model_dir=tmp_path,
        eval_steps=2,
        save_checkpoints_steps=10,
        create_exporters_fn=create_default_exporters,
        show_progress=False,
    )
    latest = tmp_path / "export" / "latest_exporter_numpy"
    best = tmp_path / "export" / "best_exporter_numpy"
    assert _steps(latest) == [10, 20]
    assert _steps(best)[0] == 10 and set(_steps(best)) <= {10, 20}
    assets = latest_version(latest).load_assets()
    assert assets.global_step == 20 and "loss" in assets.metadata["eval_metrics"]


def test_without_eval_the_latest_exporter_follows_checkpoints(tmp_path):
    seed_everything(0)
    train_eval_model(
        TinyModel(),
        SeededInput(),
        max_train_steps=10,
        model_dir=tmp_path,
        save_checkpoints_steps=5,
        create_exporters_fn=lambda model: [LatestExporter()],
        show_progress=False,
    )
    assert _steps(tmp_path / "export" / "latest_exporter") == [5, 10]


def test_async_export_hook_exports_during_training(tmp_path):
    seed_everything(0)
    builder = AsyncExportHookBuilder(save_secs=None, save_steps=4, num_versions=2)
    model = TinyModel()
    train_eval_model(
        model,
        SeededInput(),
        max_train_steps=13,
        model_dir=tmp_path,
        save_checkpoints_steps=100,
        train_hook_builders=[builder],
        show_progress=False,
    )
    (hook,) = builder.hooks
    assert hook.errors == []
    exported = [int(p.name) for p in hook.exported]
    assert exported[0] == 4 and exported[-1] == 13  # end() exports the final weights
    # Every 4 steps; a due export waits for the step after the previous write finished.
    assert all(b - a >= 4 for a, b in itertools.pairwise(exported[:-1]))
    export_dir = tmp_path / "export" / "async_export"
    assert _steps(export_dir) == exported[-2:]
    assert latest_version(export_dir).load_assets().global_step == 13


def test_async_export_after_each_checkpoint(tmp_path):
    seed_everything(0)
    builder = AsyncExportHookBuilder(tmp_path / "exports", save_secs=None, num_versions=None)
    train_eval_model(
        TinyModel(),
        SeededInput(),
        max_train_steps=9,
        model_dir=tmp_path,
        save_checkpoints_steps=3,
        train_hook_builders=[builder],
        show_progress=False,
    )
    assert _steps(tmp_path / "exports") == [3, 6, 9]


def test_td3_hooks_keep_a_lagged_copy_one_version_behind(tmp_path):
    seed_everything(0)
    builder = TD3Hooks(
        tmp_path / "latest", tmp_path / "lagged", save_secs=None, save_steps=5, background=False
    )
    train_eval_model(
        TinyModel(),
        SeededInput(),
        max_train_steps=15,
        model_dir=tmp_path,
        save_checkpoints_steps=100,
        train_hook_builders=[builder],
        show_progress=False,
    )
    assert _steps(tmp_path / "latest") == [5, 10, 15]
    assert _steps(tmp_path / "lagged") == [5, 10]
    lagged = latest_version(tmp_path / "lagged")
    assert sorted(p.name for p in lagged.path.iterdir()) == sorted(
        p.name for p in (tmp_path / "latest" / "10").iterdir()
    )
    assert lagged.load_assets().global_step == 10


def test_lagged_directory_catches_up_on_restart(tmp_path, tiny):
    for step in (1, 2, 3):
        export_saved_model(tiny, tmp_path / "latest", global_step=step)
    lagged = LaggedExportDirectory(tmp_path / "latest", tmp_path / "lagged", num_versions=3)
    assert _steps(tmp_path / "lagged") == [2] and lagged.lagged_version == 2
    path = export_saved_model(tiny, tmp_path / "latest", global_step=4)
    lagged.after_export(latest_version(tmp_path / "latest"))
    assert path.name == "4" and _steps(tmp_path / "lagged") == [2, 3]


def test_td3_hooks_reject_preprocessed_features(tmp_path):
    with pytest.raises(ValueError, match="preprocessor"):
        TD3Hooks(tmp_path / "a", tmp_path / "b", use_preprocessed_features=True)
