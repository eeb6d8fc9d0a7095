"""Meta-learning over any t2r model (Tensor2Robot's ``meta_learning``).

* `MAMLModel`: MAML around a base model (inner-loop adaptation on condition
  samples, outer loss on inference samples); `MAMLInnerLoopGradientDescent`.
* `MAMLPreprocessorV2`, `create_maml_feature_spec`, `create_maml_label_spec`:
  the meta batch layout (T2R's spec names).
* `MetaRecordInputGenerator`, `make_meta_example`, `parse_meta_examples`
  (`t2r.meta_learning.meta_data`): meta batches from per-task record files
  and from T2R's meta examples.
* `MAMLRegressionPolicy` (`t2r.meta_learning.meta_policies`): adapts at
  deployment from the condition data it is given.
"""

from __future__ import annotations

from t2r.meta_learning.maml_inner_loop import MAMLInnerLoopGradientDescent
from t2r.meta_learning.maml_model import MAMLModel
from t2r.meta_learning.meta_data import (
    MetaRecordInputGenerator,
    make_meta_example,
    parse_meta_examples,
)
from t2r.meta_learning.meta_policies import MAMLRegressionPolicy
from t2r.meta_learning.preprocessors import (
    MAMLPreprocessorV2,
    create_maml_feature_spec,
    create_maml_label_spec,
)

__all__ = [
    "MAMLInnerLoopGradientDescent",
    "MAMLModel",
    "MAMLPreprocessorV2",
    "MAMLRegressionPolicy",
    "MetaRecordInputGenerator",
    "create_maml_feature_spec",
    "create_maml_label_spec",
    "make_meta_example",
    "parse_meta_examples",
]
