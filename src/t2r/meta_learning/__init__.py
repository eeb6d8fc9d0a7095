"""Meta-learning over any t2r model (Tensor2Robot's ``meta_learning``).

* `MAMLModel`: MAML around a base model (inner-loop adaptation on condition
  samples, outer loss on inference samples); `MAMLInnerLoopGradientDescent`.
* `MAMLPreprocessorV2`, `create_maml_feature_spec`, `create_maml_label_spec`:
  the meta batch layout (T2R's spec names).
"""

from __future__ import annotations

from t2r.meta_learning.maml_inner_loop import MAMLInnerLoopGradientDescent
from t2r.meta_learning.maml_model import MAMLModel
from t2r.meta_learning.preprocessors import (
    MAMLPreprocessorV2,
    create_maml_feature_spec,
    create_maml_label_spec,
)

__all__ = [
    "MAMLInnerLoopGradientDescent",
    "MAMLModel",
    "MAMLPreprocessorV2",
    "create_maml_feature_spec",
    "create_maml_label_spec",
]
