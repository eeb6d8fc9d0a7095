"""RT1Policy: an RT-1 predictor driven one observation at a time.

Works on any predictor of an RT-1 export (`ExportedModelPredictor` needs no
model code):

* a token-reuse export (``RT1Model(token_reuse=True)``, a network state): each
  step feeds the new frame; the cached image tokens travel as the network
  state, which `reset` clears (robotics_transformer's inference);
* a recompute export (``token_reuse=False``): the policy keeps the last T
  frames and feeds the whole window every step (what rt1-pytorch does), reading
  the output slot of the newest frame.

Both give the same actions (`tests/research/rt1/test_token_reuse.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from t2r.policies import RegressionPolicy
from t2r.predictors import AbstractPredictor
from t2r.research.lang_env.features import EMBEDDING, IMAGE
from t2r.research.rt1.text_encoders import TextEncoder

ACTION_TOKENS = "action_tokens"


class RT1Policy(RegressionPolicy):
    """`select_action(observation)` -> ``{action name: (D,) array}`` for one robot.

    observation: ``image`` (H, W, 3) uint8 and either ``natural_language_embedding``
    (E,) or ``natural_language_instruction`` (str or bytes, embedded with
    `text_encoder`).

    Args:
      predictor: a predictor of an RT-1 export.
      text_encoder: embeds instructions (the one the model was trained with).
    """

    def __init__(
        self, predictor: AbstractPredictor, text_encoder: TextEncoder | None = None
    ) -> None:
        super().__init__(predictor=predictor, output_key=ACTION_TOKENS)
        self.text_encoder = text_encoder
        self._frames: list[tuple[np.ndarray, np.ndarray]] = []
        self._embedded: dict[Any, np.ndarray] = {}

    def reset(self) -> None:
        super().reset()
        self._frames = []

    def _embedding(self, observation: Mapping[str, Any]) -> np.ndarray:
        if "natural_language_embedding" in observation:
            return np.asarray(observation["natural_language_embedding"], np.float32)
        instruction = observation.get("natural_language_instruction")
        if instruction is None or self.text_encoder is None:
            raise ValueError(
                "RT1Policy: the observation needs 'natural_language_embedding', or "
                "'natural_language_instruction' and a text_encoder; got keys "
                f"{sorted(observation)}."
            )
        if instruction not in self._embedded:
            self._embedded[instruction] = self.text_encoder([instruction])[0]
        return self._embedded[instruction]

    def predict_action(self, state: Any, context: Any, timestep: int | None) -> Any:
        observation: Mapping[str, Any] = state
        image = np.asarray(observation["image"], np.uint8)
        embedding = self._embedding(observation)
        predictor = self._require_predictor()
        if predictor.initial_network_state():
            outputs = self.predict({IMAGE: image[None], EMBEDDING: embedding[None]})
            return {k: v[0] for k, v in outputs.items()}
        window = predictor.get_feature_specification()[IMAGE].shape
        assert window is not None and window[0] is not None
        length = int(window[0])
        self._frames = [*self._frames, (image, embedding)][-length:]
        slot = len(self._frames) - 1
        images = np.zeros((1, *window), np.uint8)
        embeddings = np.zeros((1, length, embedding.shape[-1]), np.float32)
        for i, (frame, frame_embedding) in enumerate(self._frames):
            images[0, i], embeddings[0, i] = frame, frame_embedding
        outputs = self.predict({IMAGE: images, EMBEDDING: embeddings})
        return {k: v[0, slot] for k, v in outputs.items()}
