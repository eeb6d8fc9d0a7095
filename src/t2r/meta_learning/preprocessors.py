"""The MAML preprocessor and the meta spec layout (T2R's ``meta_learning/preprocessors.py``).

A meta batch holds B tasks, each with ``Nc`` condition (support) samples and
``Ni`` inference (query) samples of a base model. Keys and serialized names
follow Tensor2Robot's `create_maml_feature_spec` / `create_maml_label_spec`:

===============================  ===================================  ==============
key                              spec name                            shape
===============================  ===================================  ==============
``condition/features/<path>``    ``condition_features/<base name>``   (Nc, *base)
``condition/labels/<path>``      ``condition_labels/<base name>``     (Nc, *base)
``inference/features/<path>``    ``inference_features/<base name>``   (Ni, *base)
labels ``<path>``                ``meta_labels/<base name>``          (Ni, *base)
===============================  ===================================  ==============

The labels are those of the inference samples (what the outer loss reads).
`MAMLPreprocessorV2` runs the base model's preprocessor on each group with the
task and sample dimensions merged, ``(B, N, ...) -> (B * N, ...)``, and splits
them again.
"""

from __future__ import annotations

from typing import Any

import torch

from t2r.modes import ModeKeys
from t2r.preprocessors import AbstractPreprocessor
from t2r.specs import ExtendedTensorSpec, SpecError, TensorSpecStruct, flatten_spec_structure

__all__ = [
    "CONDITION_FEATURES",
    "CONDITION_LABELS",
    "INFERENCE_FEATURES",
    "META_LABELS",
    "MAMLPreprocessorV2",
    "condition_mode_of",
    "create_maml_feature_spec",
    "create_maml_label_spec",
    "merge_task_dims",
    "split_task_dims",
]

# (key prefix, spec-name prefix) of each group.
CONDITION_FEATURES = ("condition/features", "condition_features")
CONDITION_LABELS = ("condition/labels", "condition_labels")
INFERENCE_FEATURES = ("inference/features", "inference_features")
META_LABELS = ("", "meta_labels")


def _with_samples(
    spec: Any, group: tuple[str, str], num_samples: int, out: TensorSpecStruct
) -> None:
    key_prefix, name_prefix = group
    for path, base in flatten_spec_structure(spec).items():
        if not isinstance(base, ExtendedTensorSpec):
            raise SpecError(f"MAML specs: {path!r} is not an ExtendedTensorSpec.", key=path)
        if base.is_sequence:
            raise SpecError(
                f"MAML specs: sequence spec {path!r} (name {base.name!r}) is not supported; "
                "meta batches add a sample dimension before the time dimension.",
                key=path,
                name=base.name,
            )
        name = f"{name_prefix}/{base.name or path}"
        key = f"{key_prefix}/{path}" if key_prefix else path
        out[key] = ExtendedTensorSpec.from_spec(base, name=name, batch_size=num_samples)


def create_maml_feature_spec(
    feature_spec: Any,
    label_spec: Any,
    num_condition_samples_per_task: int,
    num_inference_samples_per_task: int,
) -> TensorSpecStruct:
    """The meta feature spec of a base model's feature and label specs (see the module doc)."""
    _check_counts(num_condition_samples_per_task, num_inference_samples_per_task)
    out = TensorSpecStruct()
    _with_samples(feature_spec, CONDITION_FEATURES, num_condition_samples_per_task, out)
    _with_samples(label_spec, CONDITION_LABELS, num_condition_samples_per_task, out)
    _with_samples(feature_spec, INFERENCE_FEATURES, num_inference_samples_per_task, out)
    return out


def create_maml_label_spec(
    label_spec: Any, num_inference_samples_per_task: int
) -> TensorSpecStruct:
    """The meta label spec: the base labels of the inference samples, named ``meta_labels/...``."""
    out = TensorSpecStruct()
    _with_samples(label_spec, META_LABELS, num_inference_samples_per_task, out)
    return out


def _check_counts(num_condition: int, num_inference: int) -> None:
    for what, value in (
        ("num_condition_samples_per_task", num_condition),
        ("num_inference_samples_per_task", num_inference),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"MAML: {what} must be a positive int, got {value!r}.")


def condition_mode_of(mode: str) -> str:
    """The mode condition samples are preprocessed and scored in: `mode`, but EVAL for
    PREDICT (a deployed policy is given labelled condition samples, which PREDICT
    label specs may not describe, and must not distort them)."""
    return ModeKeys.EVAL if mode == ModeKeys.PREDICT else mode


def merge_task_dims(tensor: torch.Tensor) -> torch.Tensor:
    """(B, N, ...) -> (B * N, ...)."""
    return tensor.reshape(-1, *tensor.shape[2:])


def split_task_dims(tensor: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(B * N, ...) -> (B, N, ...), N = `num_samples` (static, so that an exported
    program keeps the spec's sample count and a dynamic B)."""
    return tensor.reshape(-1, num_samples, *tensor.shape[1:])


def task_group(flat: Any, key_prefix: str) -> TensorSpecStruct:
    """The entries of `flat` under `key_prefix` ('' : all), keys without the prefix."""
    out = TensorSpecStruct()
    if flat is None:
        return out
    head = key_prefix + "/" if key_prefix else ""
    for key, value in flatten_spec_structure(flat).items():
        if key.startswith(head) and value is not None:
            out[key[len(head) :]] = value
    return out


def merged_task_dims(group: TensorSpecStruct) -> TensorSpecStruct:
    """Every (B, N, ...) entry of `group` as (B * N, ...)."""
    return TensorSpecStruct({k: merge_task_dims(v) for k, v in group.items()})


def _put(
    target: TensorSpecStruct, key_prefix: str, values: TensorSpecStruct | None, num_samples: int
) -> None:
    if values is None:
        return
    head = key_prefix + "/" if key_prefix else ""
    for key, value in flatten_spec_structure(values).items():
        if value is not None:
            target[head + key] = split_task_dims(value, num_samples)


class MAMLPreprocessorV2(AbstractPreprocessor):
    """Runs a base preprocessor on every group of a meta batch (T2R's MAMLPreprocessorV2).

    In-specs are the base preprocessor's in-specs in the meta layout (see the
    module docstring), out-specs its out-specs in the same layout. Condition
    samples are preprocessed in EVAL mode when the mode is PREDICT
    (`condition_mode_of`).

    Args:
      base_preprocessor: the base model's preprocessor.
      num_condition_samples_per_task, num_inference_samples_per_task: Nc, Ni.
      **kwargs: `AbstractPreprocessor` arguments (the MAML model's spec
        functions, accepted and unused: the specs derive from the base).
    """

    def __init__(
        self,
        base_preprocessor: AbstractPreprocessor,
        num_condition_samples_per_task: int,
        num_inference_samples_per_task: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_counts(num_condition_samples_per_task, num_inference_samples_per_task)
        self.base_preprocessor = base_preprocessor
        self.num_condition_samples_per_task = num_condition_samples_per_task
        self.num_inference_samples_per_task = num_inference_samples_per_task

    def _features(self, feature_spec: Any, label_spec: Any) -> TensorSpecStruct:
        return create_maml_feature_spec(
            feature_spec,
            label_spec,
            self.num_condition_samples_per_task,
            self.num_inference_samples_per_task,
        )

    def get_in_feature_specification(self, mode: str) -> TensorSpecStruct:
        base = self.base_preprocessor
        return self._features(
            base.get_in_feature_specification(mode),
            base.get_in_label_specification(condition_mode_of(mode)),
        )

    def get_out_feature_specification(self, mode: str) -> TensorSpecStruct:
        base = self.base_preprocessor
        return self._features(
            base.get_out_feature_specification(mode),
            base.get_out_label_specification(condition_mode_of(mode)),
        )

    def get_in_label_specification(self, mode: str) -> TensorSpecStruct:
        return create_maml_label_spec(
            self.base_preprocessor.get_in_label_specification(mode),
            self.num_inference_samples_per_task,
        )

    def get_out_label_specification(self, mode: str) -> TensorSpecStruct:
        return create_maml_label_spec(
            self.base_preprocessor.get_out_label_specification(mode),
            self.num_inference_samples_per_task,
        )

    def _preprocess_fn(
        self, features: TensorSpecStruct, labels: TensorSpecStruct | None, mode: str
    ) -> tuple[TensorSpecStruct, TensorSpecStruct | None]:
        base = self.base_preprocessor
        condition = task_group(features, CONDITION_FEATURES[0])
        nc, ni = self.num_condition_samples_per_task, self.num_inference_samples_per_task
        condition_labels = task_group(features, CONDITION_LABELS[0])
        condition_mode = condition_mode_of(mode)
        cond_f, cond_l = base.preprocess(
            merged_task_dims(condition), merged_task_dims(condition_labels), condition_mode
        )
        inference = task_group(features, INFERENCE_FEATURES[0])
        inf_labels = merged_task_dims(task_group(labels, "")) if labels is not None else None
        inf_f, inf_l = base.preprocess(merged_task_dims(inference), inf_labels, mode)
        out_features = TensorSpecStruct()
        _put(out_features, CONDITION_FEATURES[0], cond_f, nc)
        _put(out_features, CONDITION_LABELS[0], cond_l, nc)
        _put(out_features, INFERENCE_FEATURES[0], inf_f, ni)
        out_labels = None
        if inf_l is not None:
            out_labels = TensorSpecStruct()
            _put(out_labels, "", inf_l, ni)
        return out_features, out_labels
