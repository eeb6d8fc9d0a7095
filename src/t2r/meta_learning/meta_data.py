"""The meta-learning data path: per-task record files -> meta batches, and meta examples.

Two layouts of meta-learning data, both Tensor2Robot's:

* **Per-task files** (what `t2r.collect.run_meta_env` writes with
  ``file_per_task=True``: ``..._task<i>``, one file per task, one record per
  transition). `MetaRecordInputGenerator` draws a meta batch by picking B task
  files and, in each, Nc + Ni distinct records: the first Nc are the condition
  samples, the rest the inference samples (T2R's ``meta_tfdata.parallel_read``
  + ``MAMLPreprocessorV2.create_meta_map_fn``).
* **Meta examples** (T2R's ``meta_example.py``): one tf.train.Example per task
  whose keys are each episode's keys prefixed ``condition_ep<i>/`` and
  ``inference_ep<j>/`` (`make_meta_example`); `parse_meta_examples` reads
  them into the same meta batch layout.

Either way a batch is keyed by `MAMLModel`'s packing specs (see
`t2r.meta_learning.preprocessors`); the per-record specs are recovered from
them (`base_specs_from_meta`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from t2r.data.example_proto import Example
from t2r.data.input_generators import AbstractInputGenerator
from t2r.data.parsing import ParseTFExampleFn
from t2r.data.pipeline import BatchIterable
from t2r.data.tfrecord import expand_file_patterns, read_tfrecord
from t2r.meta_learning.preprocessors import (
    CONDITION_FEATURES,
    CONDITION_LABELS,
    INFERENCE_FEATURES,
)
from t2r.modes import ModeKeys
from t2r.specs import ExtendedTensorSpec, TensorSpecStruct, flatten_spec_structure

__all__ = [
    "MetaRecordInputGenerator",
    "base_specs_from_meta",
    "make_meta_example",
    "parse_meta_examples",
]

logger = logging.getLogger(__name__)


def _strip(spec: ExtendedTensorSpec, name_prefix: str) -> ExtendedTensorSpec:
    name = spec.name or ""
    head = name_prefix + "/"
    base_name = name[len(head) :] if name.startswith(head) else name
    assert spec.shape is not None
    return ExtendedTensorSpec.from_spec(spec, shape=spec.shape[1:], name=base_name)


def base_specs_from_meta(
    meta_feature_spec: Any,
) -> tuple[TensorSpecStruct, TensorSpecStruct, int, int]:
    """The per-record feature and label specs inside a MAML packing spec.

    Returns ``(feature_spec, label_spec, Nc, Ni)``: the base model's specs
    (names without the ``condition_features/`` prefixes, shapes without the
    sample dimension) and the sample counts.
    """
    flat = flatten_spec_structure(meta_feature_spec)
    features, labels = TensorSpecStruct(), TensorSpecStruct()
    nc = ni = 0
    for key, spec in flat.items():
        for (key_prefix, name_prefix), out in (
            (CONDITION_FEATURES, features),
            (CONDITION_LABELS, labels),
        ):
            if key.startswith(key_prefix + "/"):
                out[key[len(key_prefix) + 1 :]] = _strip(spec, name_prefix)
                nc = int(spec.shape[0])
        if key.startswith(INFERENCE_FEATURES[0] + "/"):
            ni = int(spec.shape[0])
    if not features or not ni:
        raise ValueError(
            "base_specs_from_meta: the spec has no 'condition/features/...' or "
            f"'inference/features/...' entries (keys: {sorted(flat)}); is it a MAMLModel's?"
        )
    return features, labels, nc, ni


def _parse_with_labels(
    parse: ParseTFExampleFn, records: Sequence[bytes]
) -> tuple[TensorSpecStruct, TensorSpecStruct]:
    """`parse` made with a label spec: ``(features, labels)``."""
    parsed = parse(records)
    assert isinstance(parsed, tuple), "a parse fn with a label spec returns (features, labels)"
    return parsed


def _to_meta_layout(
    features: TensorSpecStruct, labels: TensorSpecStruct, num_tasks: int, nc: int
) -> tuple[TensorSpecStruct, TensorSpecStruct]:
    """Parsed records (B * (Nc + Ni), ...), task-major -> the meta batch layout."""
    out_f, out_l = TensorSpecStruct(), TensorSpecStruct()
    for key, value in flatten_spec_structure(features).items():
        if value is None:
            continue
        per_task = value.reshape(num_tasks, -1, *value.shape[1:])
        out_f[f"{CONDITION_FEATURES[0]}/{key}"] = per_task[:, :nc]
        out_f[f"{INFERENCE_FEATURES[0]}/{key}"] = per_task[:, nc:]
    for key, value in flatten_spec_structure(labels).items():
        if value is None:
            continue
        per_task = value.reshape(num_tasks, -1, *value.shape[1:])
        out_f[f"{CONDITION_LABELS[0]}/{key}"] = per_task[:, :nc]
        out_l[key] = per_task[:, nc:]
    return out_f, out_l


class MetaRecordInputGenerator(AbstractInputGenerator):
    """Meta batches from per-task record files (see the module docstring).

    `batch_size` is the number of tasks per batch. The sample counts come from
    the model's specs (`set_specification_from_model(maml_model, mode)`).

    TRAIN: an endless stream; each batch picks `batch_size` task files at
    random (without replacement when there are enough) and Nc + Ni distinct
    records of each. EVAL: one pass over the task files in order, the first
    Nc + Ni records of each (condition first), deterministic.

    Args:
      file_patterns: globs of the task files (each file is one task).
      batch_size: tasks per batch.
      seed: seeds TRAIN sampling.
      decode_images: decode encoded image features.
    """

    def __init__(
        self,
        file_patterns: str | Sequence[str],
        batch_size: int = 8,
        seed: int | None = None,
        decode_images: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size)
        self._file_patterns = file_patterns
        self._seed = seed
        self._decode_images = decode_images
        self._tasks: list[list[bytes]] | None = None

    def _load(self, needed: int) -> list[list[bytes]]:
        if self._tasks is None:
            files = expand_file_patterns(self._file_patterns)
            tasks: list[list[bytes]] = []
            skipped: list[str] = []
            for path in files:
                records = list(read_tfrecord(path))
                if len(records) >= needed:
                    tasks.append(records)
                else:
                    skipped.append(path)
            if skipped:
                logger.warning(
                    "MetaRecordInputGenerator: %d task files hold fewer than %d records "
                    "(Nc + Ni) and are skipped, e.g. %s.",
                    len(skipped),
                    needed,
                    skipped[0],
                )
            if not tasks:
                raise ValueError(
                    f"MetaRecordInputGenerator: no task file in {self._file_patterns!r} holds "
                    f"{needed} records (Nc + Ni); {len(files)} files found."
                )
            self._tasks = tasks
        return self._tasks

    def create_dataset(self, mode: str) -> BatchIterable:
        ModeKeys.validate(mode)
        self._assert_specs_initialized()
        features, labels, nc, ni = base_specs_from_meta(self._feature_spec)
        parse = ParseTFExampleFn(features, labels, self._decode_images)
        tasks = self._load(nc + ni)
        training = mode == ModeKeys.TRAIN

        def batches() -> Iterator[tuple[TensorSpecStruct, TensorSpecStruct]]:
            seed = self._seed if self._seed is not None else self._default_seed
            rng = np.random.default_rng(seed)
            if training:
                while True:
                    picked = rng.choice(
                        len(tasks), self.batch_size, replace=len(tasks) < self.batch_size
                    )
                    chosen = [
                        [tasks[t][i] for i in rng.choice(len(tasks[t]), nc + ni, replace=False)]
                        for t in picked
                    ]
                    yield self._batch(parse, chosen, nc)
            else:
                for start in range(0, len(tasks), self.batch_size):
                    chosen = [t[: nc + ni] for t in tasks[start : start + self.batch_size]]
                    yield self._batch(parse, chosen, nc)

        return BatchIterable(batches, description=type(self).__name__, single_pass=not training)

    def _batch(
        self, parse: ParseTFExampleFn, chosen: list[list[bytes]], nc: int
    ) -> tuple[TensorSpecStruct, TensorSpecStruct]:
        features, labels = _parse_with_labels(parse, [r for task in chosen for r in task])
        out = _to_meta_layout(features, labels, len(chosen), nc)
        if self._preprocess_fn is not None:
            out_f, out_l = self._preprocess_fn(*out)
            return out_f, out_l if out_l is not None else TensorSpecStruct()
        return out


def make_meta_example(
    condition_examples: Sequence[bytes | Example], inference_examples: Sequence[bytes | Example]
) -> bytes:
    """One serialized Example holding every episode Example, keys prefixed
    ``condition_ep<i>/`` and ``inference_ep<j>/`` (T2R's ``make_meta_example``)."""
    meta = Example()
    for prefix, examples in (
        ("condition_ep", condition_examples),
        ("inference_ep", inference_examples),
    ):
        for index, example in enumerate(examples):
            parsed = Example.FromString(example) if isinstance(example, bytes) else example
            for key, feature in parsed.features.feature.items():
                meta.features.feature[f"{prefix}{index}/{key}"].CopyFrom(feature)
    return meta.SerializeToString()


def parse_meta_examples(
    meta_feature_spec: Any, records: Sequence[bytes], decode_images: bool = True
) -> tuple[TensorSpecStruct, TensorSpecStruct]:
    """Meta examples (`make_meta_example`) -> a meta batch keyed by `meta_feature_spec`
    (a MAMLModel's packing spec), labels from the inference episodes."""
    features, labels, nc, ni = base_specs_from_meta(meta_feature_spec)

    def prefixed(spec: TensorSpecStruct, prefix: str) -> TensorSpecStruct:
        return TensorSpecStruct(
            {k: ExtendedTensorSpec.from_spec(s, name=f"{prefix}/{s.name}") for k, s in spec.items()}
        )

    per_episode: list[tuple[TensorSpecStruct, TensorSpecStruct]] = []
    for episode in [f"condition_ep{i}" for i in range(nc)] + [
        f"inference_ep{j}" for j in range(ni)
    ]:
        parse = ParseTFExampleFn(
            prefixed(features, episode), prefixed(labels, episode), decode_images
        )
        per_episode.append(_parse_with_labels(parse, records))
    stacked_f = TensorSpecStruct(
        {k: torch.stack([f[k] for f, _ in per_episode], dim=1) for k in features}
    )
    stacked_l = TensorSpecStruct(
        {k: torch.stack([lab[k] for _, lab in per_episode], dim=1) for k in labels}
    )
    num_tasks = len(records)
    return _to_meta_layout(
        TensorSpecStruct({k: v.reshape(-1, *v.shape[2:]) for k, v in stacked_f.items()}),
        TensorSpecStruct({k: v.reshape(-1, *v.shape[2:]) for k, v in stacked_l.items()}),
        num_tasks,
        nc,
    )
