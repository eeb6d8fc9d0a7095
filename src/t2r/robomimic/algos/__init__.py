"""robomimic's algorithms on t2r: the Algo lifecycle, the registry, the BC family, the
offline RL family (BCQ, CQL, IQL, TD3_BC) and the hierarchical family (GL, GL_VAE,
ValuePlanner, HBC, IRIS).

`algo_factory(algo_name, config, obs_key_shapes, ac_dim, device)` builds the
class a config selects; see `t2r.robomimic.algos.base` for the lifecycle,
`t2r.robomimic.algos.bc` for the BC variants and `t2r.robomimic.algos.critics` for
what the offline RL algorithms share.
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
from t2r.robomimic.algos.bcq import BCQ, BCQ_GMM, BCQ_Distributional
from t2r.robomimic.algos.cql import CQL
from t2r.robomimic.algos.gl import GL, GL_VAE, ValuePlanner
from t2r.robomimic.algos.hbc import HBC, IRIS
from t2r.robomimic.algos.iql import IQL
from t2r.robomimic.algos.td3_bc import TD3_BC

__all__ = [
    "BC",
    "BCQ",
    "BCQ_GMM",
    "BC_GMM",
    "BC_RNN",
    "BC_RNN_GMM",
    "BC_VAE",
    "CQL",
    "GL",
    "GL_VAE",
    "HBC",
    "IQL",
    "IRIS",
    "TD3_BC",
    "Algo",
    "BCQ_Distributional",
    "BC_Gaussian",
    "BC_Transformer",
    "BC_Transformer_GMM",
    "HierarchicalAlgo",
    "PlannerAlgo",
    "PolicyAlgo",
    "ValueAlgo",
    "ValuePlanner",
    "algo_factory",
    "algo_name_to_factory_func",
    "register_algo_factory_func",
    "registered_algo_names",
]
