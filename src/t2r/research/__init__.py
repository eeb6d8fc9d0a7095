"""Research projects built on t2r: an environment, models and configs each.

* `t2r.research.pose_env`: Tensor2Robot's quickstart task, a camera sees a
  duck on a table and a model predicts its position (MuJoCo).
"""
