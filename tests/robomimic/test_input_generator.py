"""RobomimicSource / RobomimicInputGenerator through the shared pipeline, tested like
tests/data/test_sources.py tests the other sources, and train_eval_model on it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.needs import needs_module

needs_module("h5py")

from t2r import specs  # noqa: E402
from t2r.data import DataSource, ReadStats  # noqa: E402
from t2r.data.errors import DataError  # noqa: E402
from t2r.models import RegressionModel  # noqa: E402
from t2r.modes import ModeKeys  # noqa: E402
from t2r.robomimic.dataset import RobomimicInputGenerator, RobomimicSource  # noqa: E402
from t2r.robomimic.hdf5 import write_robomimic_hdf5  # noqa: E402
from t2r.train import latest_checkpoint, seed_everything, train_eval_model  # noqa: E402

from .test_dataset import ENV_ARGS, coded_demo  # noqa: E402

LENGTHS = [7, 5, 9, 4, 6, 8]  # 39 steps


@pytest.fixture
def path(tmp_path: Path) -> Path:
    demos = [coded_demo(d, n, image=True) for d, n in enumerate(LENGTHS)]
    return write_robomimic_hdf5(
        tmp_path / "d.hdf5", demos, ENV_ARGS, masks={"valid": ["demo_1", "demo_4"]}
    )


def item_ids(labels: Any) -> list[int]:
    """demo * 100 + step of each window's first action (unique with seq_length 1)."""
    first = labels["actions"][:, 0].numpy()
    return [int(d * 100 + t) for d, t in first]


def stream(batches: Any, count: int) -> list[int]:
    return [i for _, labels in itertools.islice(batches, count) for i in item_ids(labels)]


ALL_IDS = sorted(d * 100 + t for d, n in enumerate(LENGTHS) for t in range(n))


def make(path: Path, batch_size: int = 4, **kwargs: Any) -> RobomimicInputGenerator:
    kwargs.setdefault("obs_keys", ["pos", "agentview_image"])
    return RobomimicInputGenerator(path, batch_size=batch_size, **kwargs)


def test_the_source_implements_the_protocol(path: Path) -> None:
    gen = make(path, frame_stack=2, seq_length=3, pad_frame_stack=False)
    source = gen.source
    assert isinstance(source, RobomimicSource) and isinstance(source, DataSource)
    assert source.units() == [f"demo_{i}" for i in range(6)]
    lengths = [source.length(u) for u in source.units()]
    assert lengths == [len(list(source.read(u, ReadStats()))) for u in source.units()]
    assert lengths == [n - 1 for n in LENGTHS]
    with pytest.raises(DataError, match="no demo 'demo_9'"):
        source.length("demo_9")


def test_eval_is_one_pass_in_order_with_spec_shaped_batches(path: Path) -> None:
    gen = make(path, batch_size=5, frame_stack=2, seq_length=3, goal_mode="last", get_pad_mask=True)
    batches = list(gen.create_dataset(ModeKeys.EVAL))
    assert sum(len(labels["actions"]) for _, labels in batches) == sum(LENGTHS)
    features, labels = batches[0]
    assert features["obs/pos"].dtype == torch.float32 and features["obs/pos"].shape == (5, 4, 3)
    assert features["obs/agentview_image"].dtype == torch.uint8
    assert features["obs/agentview_image"].shape == (5, 4, 4, 5, 3)
    assert features["goal_obs/pos"].shape == (5, 3)
    assert labels["pad_mask"].dtype == torch.bool and labels["pad_mask"].shape == (5, 4, 1)
    # the batches are the dataset's items, in order
    everything = gen.dataset.get_batch(np.arange(len(gen.dataset)))
    got = torch.cat([labels["actions"] for _, labels in batches]).numpy()
    np.testing.assert_array_equal(got, everything["actions"])
    images = torch.cat([f["obs/agentview_image"] for f, _ in batches]).numpy()
    np.testing.assert_array_equal(images, everything["obs"]["agentview_image"])
    # worked check through the generator: item 0 starts with a padded frame
    assert labels["pad_mask"][0, :, 0].tolist() == [False, True, True, True]


def test_train_epochs_are_uniform_permutations_and_follow_the_seed(path: Path) -> None:
    def first(seed: int) -> list[int]:
        return stream(make(path, batch_size=3, seed=seed).create_dataset(ModeKeys.TRAIN), 26)

    ids = first(1)
    # 39 windows an epoch: every epoch is every window once, in a fresh order
    assert sorted(ids[:39]) == ALL_IDS and sorted(ids[39:78]) == ALL_IDS
    assert ids[:39] != ids[39:78]
    # the default shuffle buffer is the whole epoch: windows of one demo are spread
    # out, not clumped as demo-by-demo reading would leave them
    demos_in_first_batches = {i // 100 for i in ids[:9]}
    assert len(demos_in_first_batches) >= 3
    assert ids == first(1) and ids != first(2)


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_read_disjoint_shards(path: Path, workers: int) -> None:
    per_rank = []
    for rank in range(2):
        gen = make(path, num_workers=workers, rank=rank, world_size=2)
        per_rank.append(
            [i for _, labels in gen.create_dataset(ModeKeys.EVAL) for i in item_ids(labels)]
        )
    assert all(per_rank)
    assert sorted(per_rank[0] + per_rank[1]) == ALL_IDS


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("position", [1, 9, 13, 40])
def test_iter_from_continues_the_uninterrupted_stream(
    path: Path, workers: int, position: int
) -> None:
    def gen() -> RobomimicInputGenerator:
        return make(path, batch_size=4, seed=3, num_workers=workers, cycle_length=2)

    count = 6
    full = stream(gen().create_dataset(ModeKeys.TRAIN), position + count)
    dataset = gen().create_dataset(ModeKeys.TRAIN)
    tail = stream(dataset.iter_from(position), count)
    assert tail == full[position * 4 :]


def test_filter_key_for_validation(path: Path) -> None:
    gen = make(path, filter_by_attribute="valid")
    ids = [i for _, labels in gen.create_dataset(ModeKeys.EVAL) for i in item_ids(labels)]
    assert ids == [100 + t for t in range(5)] + [400 + t for t in range(6)]


def test_a_spec_the_file_cannot_fill_is_named(path: Path) -> None:
    gen = make(path)
    spec = specs.TensorSpecStruct(
        [("obs/gripper", specs.ExtendedTensorSpec((1, 2), torch.float32, name="obs/gripper"))]
    )
    gen.set_feature_specifications(spec, None)
    with pytest.raises(DataError, match=r"the feature spec asks for 'obs/gripper'"):
        next(iter(gen.create_dataset(ModeKeys.EVAL)))


# ------------------------------------------------------------- training


class WindowRegression(RegressionModel):
    """Predicts each window's actions from its positions (paths and names from the file)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = nn.Linear(3, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            [("obs/pos", specs.ExtendedTensorSpec((3, 3), torch.float32, name="obs/pos"))]
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        # a model path of its own, fed from the file's "actions" by the spec's name
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((3, 2), torch.float32, name="actions")
        )

    def a_func(self, features: Any, mode: str, config: Any = None, params: Any = None) -> Any:
        return {"inference_output": self.net(features["obs/pos"])}


def _train(model_dir: Path, path: Path, steps: int) -> WindowRegression:
    seed_everything(0)
    model = WindowRegression()
    train_eval_model(
        model,
        make(path, batch_size=6, seq_length=3),
        input_generator_eval=make(path, batch_size=6, seq_length=3, filter_by_attribute="valid"),
        max_train_steps=steps,
        eval_steps=2,
        model_dir=model_dir,
        save_checkpoints_steps=4,
        show_progress=False,
        device="cpu",
    )
    return model


def test_train_eval_model_trains_from_the_file_and_resumes_exactly(
    tmp_path: Path, path: Path
) -> None:
    straight = _train(tmp_path / "straight", path, 12)
    assert latest_checkpoint(tmp_path / "straight").global_step == 12
    _train(tmp_path / "resumed", path, 4)
    resumed = _train(tmp_path / "resumed", path, 12)  # resumes at step 4's input position
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_sequence_specs_give_the_per_step_shape(path: Path) -> None:
    """A model may declare per-step shapes with is_sequence (the window adds T)."""
    gen = make(path, batch_size=3, frame_stack=2, seq_length=3)
    features = specs.TensorSpecStruct(
        [
            ("obs/pos", specs.ExtendedTensorSpec((3,), torch.float32, "obs/pos", is_sequence=True)),
            ("goal", specs.ExtendedTensorSpec((3,), torch.float32, "obs/pos", is_sequence=True)),
        ]
    )
    labels = specs.TensorSpecStruct(
        actions=specs.ExtendedTensorSpec((2,), torch.float32, "actions", is_sequence=True)
    )
    gen.set_feature_specifications(features, labels)
    f, lab = next(iter(gen.create_dataset(ModeKeys.EVAL)))
    assert f["obs/pos"].shape == (3, 4, 3) and f["goal"].shape == (3, 4, 3)
    assert lab["actions"].shape == (3, 4, 2)
    wrong = specs.TensorSpecStruct(
        actions=specs.ExtendedTensorSpec((7,), torch.float32, "actions", is_sequence=True)
    )
    gen.set_feature_specifications(features, wrong)
    with pytest.raises(
        DataError, match=r"label 'actions' has shape \(2,\) per step, the spec says \(7,\)"
    ):
        next(iter(gen.create_dataset(ModeKeys.EVAL)))
