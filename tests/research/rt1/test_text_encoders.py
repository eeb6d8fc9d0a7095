"""Text encoders and RT-1 trained from instruction strings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2r import specs
from t2r.modes import ModeKeys
from t2r.research.rt1 import HashingTextEncoder, RT1Model, SentenceTransformerEncoder
from t2r.train import seed_everything


def test_hashing_encoder_is_deterministic_normalized_and_tells_instructions_apart():
    encoder = HashingTextEncoder()
    texts = ["pick red block", b"pick blue block", "push the green cube left"]
    a = encoder(texts)
    assert a.shape == (3, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    # A new encoder (another process would build the same) gives the same vectors.
    assert np.array_equal(HashingTextEncoder()(texts), a)
    similarity = a @ a.T
    assert similarity[0, 1] > similarity[0, 2]  # shared words count
    assert similarity[0, 1] < 0.99  # but "red" and "blue" still differ
    assert not np.array_equal(HashingTextEncoder(seed=1)(texts), a)


def test_sentence_transformers_needs_a_local_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        SentenceTransformerEncoder(tmp_path / "no-model")


def test_rt1_trains_from_instruction_strings():
    seed_everything(0)
    model = RT1Model(text_encoder=HashingTextEncoder())
    packing = model.get_feature_specification_for_packing(ModeKeys.TRAIN)
    assert packing["observation/natural_language_instruction"].dtype is specs.string
    assert packing["observation/natural_language_instruction"].shape == (6,)
    assert "observation/natural_language_embedding" not in packing
    # PREDICT takes the embedding: exports take tensors, the client embeds.
    predict = model.get_feature_specification_for_packing(ModeKeys.PREDICT)
    assert predict["observation/natural_language_embedding"].shape == (512,)
    features = specs.make_random_numpy(packing, batch_size=2, seed=0)
    texts = np.array([[b"pick red"] * 6, [b"pick blue"] * 6], dtype=object)
    features["observation/natural_language_instruction"] = texts
    processed, _ = model.prepare_inputs(
        {k: v if v.dtype == object else torch.from_numpy(v) for k, v in features.items()},
        None,
        ModeKeys.EVAL,
    )
    embedding = processed["observation/natural_language_embedding"]
    assert embedding.shape == (2, 6, 512)
    expected = HashingTextEncoder()([b"pick red", b"pick blue"])
    np.testing.assert_allclose(embedding[:, 0].numpy(), expected)
    # A training step from strings reaches the FiLM layers (zero-initialized).
    labels = specs.make_random_numpy(
        model.get_label_specification_for_packing(ModeKeys.TRAIN), batch_size=2, seed=1
    )
    before = model.image_encoder.films[0].mult.weight.detach().clone()
    features = {k: v if v.dtype == object else torch.from_numpy(v) for k, v in features.items()}
    model.train_step(
        features, {k: torch.from_numpy(v) for k, v in labels.items()}, model.create_optimizer()
    )
    assert not torch.equal(model.image_encoder.films[0].mult.weight, before)


def test_the_encoder_size_must_match():
    with pytest.raises(ValueError, match="gives 64-d embeddings, embedding_size is 512"):
        RT1Model(text_encoder=HashingTextEncoder(dim=64))
