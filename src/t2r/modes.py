"""The three modes a model runs in, with Tensor2Robot's (Estimator's) values."""

from __future__ import annotations


class ModeKeys:
    """TRAIN, EVAL and PREDICT, as strings so gin configs and files can name them."""

    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"

    ALL = (TRAIN, EVAL, PREDICT)

    @classmethod
    def validate(cls, mode: str) -> str:
        """Returns `mode`, or raises ValueError naming the valid modes."""
        if mode not in cls.ALL:
            raise ValueError(f"Unknown mode {mode!r}; expected one of {cls.ALL}.")
        return mode
