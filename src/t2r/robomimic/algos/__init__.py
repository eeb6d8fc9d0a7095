"""robomimic's algorithms on t2r: the Algo lifecycle, the registry and the BC family.

`algo_factory(algo_name, config, obs_key_shapes, ac_dim, device)` builds the
class a config selects; see `t2r.robomimic.algos.base` for the lifecycle and
`t2r.robomimic.algos.bc` for the BC variants.
"""

from __future__ import annotations

from t2r.robomimic.algos.base import (
    Algo,
    HierarchicalAlgo,
    PlannerAlgo,
    PolicyAlgo,
    ValueAlgo,
    algo_factory,
    algo_name_to_factory_func,
    register_algo_factory_func,
    registered_algo_names,
)
from t2r.robomimic.algos.bc import (
    BC,
    BC_GMM,
    BC_RNN,
    BC_RNN_GMM,
    BC_VAE,
    BC_Gaussian,
    BC_Transformer,
    BC_Transformer_GMM,
)

__all__ = [
    "BC",
    "BC_GMM",
    "BC_RNN",
    "BC_RNN_GMM",
    "BC_VAE",
    "Algo",
    "BC_Gaussian",
    "BC_Transformer",
    "BC_Transformer_GMM",
    "HierarchicalAlgo",
    "PlannerAlgo",
    "PolicyAlgo",
    "ValueAlgo",
    "algo_factory",
    "algo_name_to_factory_func",
    "register_algo_factory_func",
    "registered_algo_names",
]
