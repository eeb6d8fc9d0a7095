"""An end-to-end smoke run of what t2r has so far (``t2r demo``).

It declares a model's specs the Tensor2Robot way, makes a batch from them,
validates and packs it as a model_fn would, shows the error a wrong input
gets, and writes the self-describing assets an export carries, then reads them
back. The pose_env demo replaces this once the environment and trainer exist.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from t2r import specs

logger = logging.getLogger(__name__)


def feature_spec() -> specs.TensorSpecStruct:
    """A pose_env-like model input: a camera image (serialized as JPEG)."""
    spec = specs.TensorSpecStruct()
    spec["state/image"] = specs.ExtendedTensorSpec(
        (64, 64, 3), torch.uint8, name="state/image", data_format="jpeg"
    )
    return spec


def label_spec() -> specs.TensorSpecStruct:
    """The target the model regresses: the object's (x, y) on the table."""
    spec = specs.TensorSpecStruct()
    spec.target_pose = specs.ExtendedTensorSpec((2,), torch.float32, name="target_pose")
    spec.reward = specs.ExtendedTensorSpec((1,), torch.float32, name="reward", is_optional=True)
    return spec


def run(output_dir: str | Path, batch_size: int = 8, seed: int = 0) -> specs.T2RAssets:
    """Runs the smoke example, writing ``t2r_assets.json`` under `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    features_spec, labels_spec = feature_spec(), label_spec()
    logger.info("Feature spec:\n%s", features_spec)

    # What an input generator would produce, made from the specs alone.
    features = specs.make_random_numpy(features_spec, batch_size=batch_size, seed=seed)
    labels = specs.make_random_numpy(labels_spec, batch_size=batch_size, seed=seed + 1)
    del labels["reward"]  # optional: may be absent

    # What a model_fn does first: check the data against the specs and pack it.
    packed = specs.validate_and_pack(features_spec, features, ignore_batch=True)
    packed_labels = specs.validate_and_pack(labels_spec, labels, ignore_batch=True)
    images = specs.to_tensors(packed, features_spec).state.image
    logger.info(
        "Validated a batch: state.image %s %s, target_pose %s; absent optional reward -> %s",
        tuple(images.shape),
        images.dtype,
        tuple(packed_labels.target_pose.shape),
        packed_labels.reward,
    )

    wrong = {"state/image": np.zeros((batch_size, 48, 64, 3), np.uint8)}
    try:
        specs.validate_and_pack(features_spec, wrong, ignore_batch=True)
    except specs.SpecError as e:
        logger.info("A wrong input is caught before it reaches the model: %s", e)
    else:  # pragma: no cover - the check above must fire
        raise AssertionError("a wrongly shaped image passed validation")

    assets_path = output_dir / specs.T2R_ASSETS_FILENAME
    assets = specs.T2RAssets(features_spec, labels_spec, global_step=0)
    specs.write_t2r_assets_to_file(assets, assets_path)
    loaded = specs.load_t2r_assets_to_file(assets_path)
    specs.assert_equal(features_spec, loaded.feature_spec)
    logger.info(
        "Wrote and re-read %s: %d feature and %d label specs.",
        assets_path,
        len(loaded.feature_spec),
        len(loaded.label_spec or {}),
    )
    return loaded
