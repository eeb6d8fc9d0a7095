"""RT1Model: Robotics Transformer 1 (Brohan et al. 2022) as a t2r model.

Images of the last T steps (6) and the instruction embedding -> FiLM-EfficientNet
(FiLM after every MBConv block) -> TokenLearner (8 tokens per image) -> a
decoder-only transformer over [image tokens, action tokens] per step -> 256-way
logits per action dimension, trained with cross-entropy against the tokenized
actions (`RT1ActionTokenizer`).

Specs (batch dimension omitted), the contract with the RLDS data source:

* TRAIN/EVAL features: ``observation/image`` uint8 (T, H, W, 3),
  ``observation/natural_language_embedding`` float32 (T, E) — or, with a
  `text_encoder`, ``observation/natural_language_instruction`` string (T,),
  embedded by the preprocessor. Labels: the action spec per step with a time
  dimension, e.g. ``action/world_vector`` float32 (T, 3),
  ``action/terminate_episode`` int32 (T, 3) one-hot.
* PREDICT with ``token_reuse=True`` (the default): one new frame,
  ``observation/image`` (H, W, 3) and ``observation/natural_language_embedding``
  (E,), plus the network state ``network_state/image_tokens`` float32
  (T, S, D) (the image tokens of the window) and ``network_state/seq_idx``
  int64 (1,) (frames seen, capped at T). Only the new frame is encoded; the
  outputs are the step's actions (``action/world_vector`` (3,), ...), its
  ``action_tokens`` (A,), and the next state. This is robotics_transformer's
  inference: frames fill slots 0..T-1, then the window shifts left by one.
* PREDICT with ``token_reuse=False``: the whole window (T, H, W, 3) and
  (T, E), no state; outputs carry a time dimension (T, ...): slot t is the
  action after frames 0..t (causal), so a client at step t < T of an episode
  puts its t + 1 frames first and reads slot t.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from t2r import specs
from t2r.models import AbstractT2RModel
from t2r.modes import ModeKeys
from t2r.preprocessors import AbstractPreprocessor
from t2r.research.lang_env.features import EMBEDDING, IMAGE, INSTRUCTION
from t2r.research.rt1.action_tokenizer import RT1ActionTokenizer, rt1_action_spec
from t2r.research.rt1.film_efficientnet import FiLMEfficientNet, load_imagenet_weights
from t2r.research.rt1.text_encoders import TextEncoder
from t2r.research.rt1.token_learner import TokenLearner
from t2r.research.rt1.transformer import RT1Transformer, rt1_attention_mask

IMAGE_TOKENS = "image_tokens"
SEQ_IDX = "seq_idx"
ACTION_TOKENS = "action_tokens"

# The paper's sizes (robotics_transformer's RT-1 configuration).
PAPER_SIZE: dict[str, Any] = dict(
    image_size=300,
    efficientnet_width=1.2,
    efficientnet_depth=1.4,
    num_layers=8,
    num_heads=8,
    key_size=128,
    d_model=512,
    dropout=0.1,
)

# A size that learns small CPU tasks (96 px images, EfficientNet-B0 width/2).
SMALL_SIZE: dict[str, Any] = dict(
    image_size=96,
    efficientnet_width=0.5,
    efficientnet_depth=0.5,
    num_layers=4,
    num_heads=4,
    key_size=32,
    d_model=128,
    dropout=0.1,
)


class InstructionEmbeddingPreprocessor(AbstractPreprocessor):
    """In TRAIN/EVAL, ``observation/natural_language_instruction`` strings (T,) ->
    ``observation/natural_language_embedding`` (T, E) with `text_encoder`; every other
    feature and all labels pass through. In PREDICT the in-spec is the model's
    (the client embeds its instruction with the same encoder: exports take tensors).
    """

    def __init__(
        self,
        model_feature_specification_fn: Any = None,
        model_label_specification_fn: Any = None,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        super().__init__(model_feature_specification_fn, model_label_specification_fn)
        if text_encoder is None:
            raise ValueError("InstructionEmbeddingPreprocessor needs a text_encoder.")
        self.text_encoder = text_encoder

    def get_in_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        features = self._model_feature_specification(mode)
        if mode == ModeKeys.PREDICT:
            return features
        embedding = features.pop(EMBEDDING)
        features[INSTRUCTION] = specs.ExtendedTensorSpec(
            tuple(embedding.shape or ())[:-1], specs.string, name=INSTRUCTION
        )
        return features

    def get_in_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_label_specification(mode)

    def get_out_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_feature_specification(mode)

    def get_out_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._model_label_specification(mode)

    def _preprocess_fn(self, features, labels, mode):
        if mode == ModeKeys.PREDICT:
            return features, labels
        texts = features.pop(INSTRUCTION)
        flat = np.asarray(texts, dtype=object).reshape(-1)
        embedding = self.text_encoder(list(flat)).reshape(*texts.shape, -1)
        features[EMBEDDING] = torch.from_numpy(embedding).to(features[IMAGE].device)
        return features, labels


class RT1Model(AbstractT2RModel):
    """Robotics Transformer 1.

    The defaults are a tiny size that unit tests construct (32 px, 1 layer);
    `PAPER_SIZE` holds the paper's (35.1M parameters) and `SMALL_SIZE` one for
    CPU tasks, e.g. ``RT1Model(**PAPER_SIZE)``; the gin configs in
    ``research/rt1/configs`` set them (see ``docs/rt1.md``).

    Args:
      image_size: H = W (or (H, W)) of the images the model reads (300 in the paper).
      time_sequence_length: T, frames of history (6).
      action_spec: per-step action specs with bounds (default `rt1_action_spec()`);
        the labels are these with a leading T dimension.
      vocab_size: action tokens per dimension (256).
      num_image_tokens: TokenLearner's tokens per image (8).
      efficientnet_width, efficientnet_depth: EfficientNet scaling (B3: 1.2, 1.4).
      num_layers, num_heads, key_size, d_model, dropout: the transformer (8, 8,
        128, 512, 0.1); the feed-forward size equals d_model, as in RT-1.
      embedding_size: size of the instruction embedding (512).
      token_reuse: PREDICT takes one frame plus the cached image tokens (True) or
        the whole window (False); see the module docstring.
      text_encoder: embeds ``natural_language_instruction`` strings in TRAIN/EVAL
        (None: the data provides ``natural_language_embedding``).
      imagenet_weights: a local safetensors file of EfficientNet weights
        (`load_imagenet_weights`); None starts from random weights.
    """

    attention_mask: torch.Tensor
    action_logit_positions: torch.Tensor

    def __init__(
        self,
        image_size: int | tuple[int, int] = 32,
        time_sequence_length: int = 6,
        action_spec: specs.TensorSpecStruct | None = None,
        vocab_size: int = 256,
        num_image_tokens: int = 8,
        efficientnet_width: float = 0.25,
        efficientnet_depth: float = 0.25,
        num_layers: int = 1,
        num_heads: int = 2,
        key_size: int = 16,
        d_model: int = 64,
        dropout: float = 0.1,
        embedding_size: int = 512,
        token_reuse: bool = True,
        text_encoder: TextEncoder | None = None,
        imagenet_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        if text_encoder is not None and "preprocessor_cls" not in kwargs:
            kwargs["preprocessor_cls"] = functools.partial(
                InstructionEmbeddingPreprocessor, text_encoder=text_encoder
            )
        if text_encoder is not None and text_encoder.dim != embedding_size:
            raise ValueError(
                f"RT1Model: the text encoder {text_encoder!r} gives {text_encoder.dim}-d "
                f"embeddings, embedding_size is {embedding_size}."
            )
        super().__init__(**kwargs)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.time_sequence_length = time_sequence_length
        self.embedding_size = embedding_size
        self.token_reuse = token_reuse
        self.text_encoder = text_encoder
        self.action_spec = specs.flatten_spec_structure(action_spec or rt1_action_spec())
        self.tokenizer = RT1ActionTokenizer(self.action_spec, vocab_size)
        self.tokens_per_action = self.tokenizer.tokens_per_action
        self.num_image_tokens = num_image_tokens
        self.d_model = d_model
        self.image_encoder = FiLMEfficientNet(
            efficientnet_width, efficientnet_depth, embedding_size, output_channels=d_model
        )
        if imagenet_weights is not None:
            load_imagenet_weights(self.image_encoder, imagenet_weights)
        self.token_learner = TokenLearner(d_model, num_image_tokens)
        step = num_image_tokens + self.tokens_per_action
        self.transformer = RT1Transformer(
            max_tokens=time_sequence_length * step,
            num_layers=num_layers,
            num_heads=num_heads,
            key_size=key_size,
            d_model=d_model,
            feed_forward_size=d_model,
            dropout=dropout,
            vocab_size=vocab_size,
        )
        mask = rt1_attention_mask(time_sequence_length, num_image_tokens, self.tokens_per_action)
        self.register_buffer("attention_mask", mask, persistent=False)
        # Output position predicting each action token: the position before it.
        positions = [
            t * step + num_image_tokens + k - 1
            for t in range(time_sequence_length)
            for k in range(self.tokens_per_action)
        ]
        self.register_buffer(
            "action_logit_positions", torch.tensor(positions, dtype=torch.long), persistent=False
        )

    # ------------------------------------------------------------------ specs
    def _action_labels(self) -> specs.TensorSpecStruct:
        t = self.time_sequence_length
        return specs.TensorSpecStruct(
            (key, specs.ExtendedTensorSpec.from_spec(spec, shape=(t, *spec.shape)))
            for key, spec in self.action_spec.items()
        )

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        h, w = self.image_size
        window = (
            () if mode == ModeKeys.PREDICT and self.token_reuse else (self.time_sequence_length,)
        )
        return specs.TensorSpecStruct(
            [
                (IMAGE, specs.ExtendedTensorSpec((*window, h, w, 3), torch.uint8, name=IMAGE)),
                (
                    EMBEDDING,
                    specs.ExtendedTensorSpec(
                        (*window, self.embedding_size), torch.float32, name=EMBEDDING
                    ),
                ),
            ]
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return self._action_labels()

    def get_network_state_specification(self) -> specs.TensorSpecStruct:
        if not self.token_reuse:
            return specs.TensorSpecStruct()
        shape = (self.time_sequence_length, self.num_image_tokens, self.d_model)
        return specs.TensorSpecStruct(
            [
                (IMAGE_TOKENS, specs.ExtendedTensorSpec(shape, torch.float32, name=IMAGE_TOKENS)),
                (SEQ_IDX, specs.ExtendedTensorSpec((1,), torch.int64, name=SEQ_IDX)),
            ]
        )

    # -------------------------------------------------------------- network
    def encode_images(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """images (B, T, H, W, 3) uint8, embedding (B, T, E) -> tokens (B, T, S, D)."""
        b, t = images.shape[:2]
        pixels = images.reshape(b * t, *images.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        features = self.image_encoder(pixels, embedding.reshape(b * t, -1).float())
        return self.token_learner(features).reshape(b, t, self.num_image_tokens, -1)

    def action_logits(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """image tokens (B, T', S, D), T' <= T -> action logits (B, T', A, V).

        Action tokens enter as zeros (robotics_transformer zeroes their
        embeddings); the logit of each action token is read at the position
        before it (next-token prediction).
        """
        b, t = image_tokens.shape[:2]
        zeros = image_tokens.new_zeros(b, t, self.tokens_per_action, image_tokens.shape[-1])
        sequence = torch.cat([image_tokens, zeros], dim=2).reshape(b, -1, image_tokens.shape[-1])
        n = sequence.shape[1]
        logits = self.transformer(sequence, self.attention_mask[:n, :n])
        positions = self.action_logit_positions[: t * self.tokens_per_action]
        return logits[:, positions].reshape(b, t, self.tokens_per_action, -1)

    def _outputs(self, logits: torch.Tensor) -> dict[str, Any]:
        tokens = logits.argmax(dim=-1)
        outputs: dict[str, Any] = {"action_logits": logits, ACTION_TOKENS: tokens}
        outputs.update(self.tokenizer.detokenize(tokens))
        return outputs

    def inference_network_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct | None,
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, Any]:
        if mode == ModeKeys.PREDICT and self.token_reuse:
            return self.predict_step(
                features[IMAGE],
                features[EMBEDDING],
                features[f"network_state/{IMAGE_TOKENS}"],
                features[f"network_state/{SEQ_IDX}"],
            )
        tokens = self.encode_images(features[IMAGE], features[EMBEDDING])
        return self._outputs(self.action_logits(tokens))

    def predict_step(
        self,
        image: torch.Tensor,
        embedding: torch.Tensor,
        image_tokens: torch.Tensor,
        seq_idx: torch.Tensor,
    ) -> dict[str, Any]:
        """One policy step with token reuse.

        image (B, H, W, 3) uint8, embedding (B, E), image_tokens (B, T, S, D) of
        the previous call, seq_idx (B, 1) frames seen so far (0 at an episode's
        start). Encodes only `image`; its tokens go to slot min(seq_idx, T - 1),
        after shifting the window left once it is full. Returns the step's
        actions (B, ...), tokens, logits and ``next_network_state``.
        """
        t = self.time_sequence_length
        seen = seq_idx[:, 0].clamp(0, t)
        new = self.encode_images(image[:, None], embedding[:, None])  # (B, 1, S, D)
        full = (seen == t)[:, None, None, None]
        window = torch.where(full, torch.roll(image_tokens, -1, dims=1), image_tokens)
        slot = seen.clamp(max=t - 1)
        here = F.one_hot(slot, t).bool()[:, :, None, None]
        window = torch.where(here, new.to(window.dtype), window)
        logits = self.action_logits(window)  # (B, T, A, V)
        index = slot[:, None, None, None].expand(-1, 1, *logits.shape[2:])
        outputs = self._outputs(logits.gather(1, index)[:, 0])
        outputs["next_network_state"] = {
            IMAGE_TOKENS: window,
            SEQ_IDX: (seen + 1).clamp(max=t)[:, None],
        }
        return outputs

    def predict_window(self, images: torch.Tensor, embedding: torch.Tensor) -> dict[str, Any]:
        """Full recompute: images (B, T', H, W, 3), embedding (B, T', E), T' <= T ->
        the actions after the last frame (B, ...), re-encoding every frame."""
        logits = self.action_logits(self.encode_images(images, embedding))
        return self._outputs(logits[:, -1])

    # ----------------------------------------------------------- training
    def model_train_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = inference_outputs["action_logits"]  # (B, T, A, V)
        targets = self.tokenizer.tokenize({k: labels[k] for k in self.action_spec})
        loss = F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten())
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return loss, {"action_token_accuracy": accuracy.detach()}

    def model_eval_fn(
        self,
        features: specs.TensorSpecStruct,
        labels: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        train_loss: torch.Tensor,
        train_outputs: dict[str, Any],
        mode: str,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        return {"action_token_accuracy": train_outputs["action_token_accuracy"]}

    def create_export_outputs_fn(
        self,
        features: specs.TensorSpecStruct,
        inference_outputs: dict[str, Any],
        mode: str = ModeKeys.PREDICT,
        config: Any = None,
        params: Any = None,
    ) -> dict[str, torch.Tensor]:
        keys = [*self.action_spec, ACTION_TOKENS]
        return {k: inference_outputs[k] for k in keys}

    def pack_features(self, *policy_inputs: Any) -> dict[str, Any]:
        """(observation dict with 'image' and 'natural_language_embedding', ...) ->
        features; the network state is the policy's business."""
        observation: Mapping[str, Any] = policy_inputs[0]
        return {IMAGE: observation["image"], EMBEDDING: observation["natural_language_embedding"]}
