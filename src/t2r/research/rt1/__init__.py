"""RT-1 (Robotics Transformer 1) on t2r: model, tokenizers, text encoders, configs.

See ``docs/rt1.md``.
"""

from __future__ import annotations

from t2r.research.rt1.action_tokenizer import RT1ActionTokenizer, rt1_action_spec
from t2r.research.rt1.film_efficientnet import (
    FiLM,
    FiLMEfficientNet,
    backbone_state_dict,
    load_imagenet_weights,
)
from t2r.research.rt1.rt1_model import (
    PAPER_SIZE,
    SMALL_SIZE,
    InstructionEmbeddingPreprocessor,
    RT1Model,
)
from t2r.research.rt1.text_encoders import (
    HashingTextEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
)
from t2r.research.rt1.token_learner import TokenLearner
from t2r.research.rt1.transformer import RT1Transformer, rt1_attention_mask

__all__ = [
    "PAPER_SIZE",
    "SMALL_SIZE",
    "FiLM",
    "FiLMEfficientNet",
    "HashingTextEncoder",
    "InstructionEmbeddingPreprocessor",
    "RT1ActionTokenizer",
    "RT1Model",
    "RT1Transformer",
    "SentenceTransformerEncoder",
    "TextEncoder",
    "TokenLearner",
    "backbone_state_dict",
    "load_imagenet_weights",
    "rt1_action_spec",
    "rt1_attention_mask",
]
