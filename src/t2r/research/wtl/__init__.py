"""Watch-Try-Learn (Zhou et al. 2019) on a MuJoCo reach task (T2R's ``research/vrgripper``).

* `t2r.research.wtl.wtl_env.WatchTryLearnEnv`: the task (the goal is seen only in
  the demonstration, up to its colour; a trial's reward tells the twins apart).
* `t2r.research.wtl.scripted`: the demonstrator and the perfect scripted agent.
* `t2r.research.wtl.episodes`: episodes -> fixed-length meta examples.
* `t2r.research.wtl.wtl_models`: `WTLTrialModel`, `WTLRetrialModel`.
* `t2r.research.wtl.policies`: `WTLPolicy` (trial, then retrial, in `run_meta_env`).
* `python -m t2r.research.wtl.run_wtl OUT_DIR`: collect, train, export, evaluate
  (docs/wtl.md); ``configs/wtl_statespace_{trial,retrial}.gin`` for ``t2r train``.

Modules import MuJoCo only where they need it (`wtl_env`).
"""
