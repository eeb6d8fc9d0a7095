"""Instruction text -> embedding, outside the exported program.

RT-1 conditions on a 512-d sentence embedding (the Universal Sentence Encoder
in the paper; RLDS datasets store it per step as
``observation/natural_language_embedding``). A model either reads that stored
embedding, or turns ``observation/natural_language_instruction`` strings into
one with a `TextEncoder` in its preprocessor (`InstructionEmbeddingPreprocessor`);
a policy calls the same encoder on its instruction. Encoders are frozen
functions of the text (no trainable weights), so training and serving agree.

* `HashingTextEncoder`: built in, offline, deterministic: hashed word and
  character-trigram counts times a fixed random (seeded) projection, L2
  normalized. Distinct instructions get distinct, nearly orthogonal embeddings;
  instructions sharing words share part of theirs.
* `SentenceTransformerEncoder`: a sentence-transformers model from a local
  directory, only when the package and the weights are present (nothing is
  downloaded; its constructor raises a clear error otherwise).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class TextEncoder(Protocol):
    """texts -> (N, dim) float32 embeddings."""

    dim: int

    def __call__(self, texts: Sequence[str | bytes]) -> np.ndarray: ...


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class HashingTextEncoder:
    """Hashed bag of words and character trigrams, randomly projected to `dim`.

    Args:
      dim: embedding size (512 like RLDS' embeddings).
      num_buckets: hash buckets (rows of the projection).
      seed: seed of the projection; the same seed gives the same embeddings in
        every process (the hash is CRC-32, not Python's salted hash).
    """

    def __init__(self, dim: int = 512, num_buckets: int = 2048, seed: int = 0) -> None:
        self.dim, self.num_buckets, self.seed = dim, num_buckets, seed
        rng = np.random.default_rng(seed)
        self._projection = (rng.standard_normal((num_buckets, dim)) / np.sqrt(dim)).astype(
            np.float32
        )

    def features(self, text: str) -> list[str]:
        words = text.lower().split()
        grams = []
        for word in words:
            padded = f" {word} "
            grams += [padded[i : i + 3] for i in range(len(padded) - 2)]
        return [f"w:{w}" for w in words] + [f"c:{g}" for g in grams]

    def __call__(self, texts: Sequence[str | bytes]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, value in enumerate(texts):
            counts = np.zeros(self.num_buckets, np.float32)
            for feature in self.features(_text(value)):
                counts[zlib.crc32(feature.encode("utf-8")) % self.num_buckets] += 1.0
            vector = counts @ self._projection
            norm = float(np.linalg.norm(vector))
            out[row] = vector / norm if norm > 0 else vector
        return out

    def __repr__(self) -> str:
        return (
            f"HashingTextEncoder(dim={self.dim}, num_buckets={self.num_buckets}, seed={self.seed})"
        )


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local directory (never downloaded).

    Raises:
      ImportError: sentence-transformers is not installed.
      FileNotFoundError: `model_path` is not a directory.
    """

    def __init__(self, model_path: str | Path, device: str = "cpu") -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"SentenceTransformerEncoder: no model directory at {path} (t2r never downloads "
                "weights; save a model there with SentenceTransformer(...).save(path), or use "
                "HashingTextEncoder)."
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ImportError(
                "SentenceTransformerEncoder needs the sentence-transformers package; "
                "HashingTextEncoder works without it."
            ) from e
        self._model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def __call__(self, texts: Sequence[str | bytes]) -> np.ndarray:
        embeddings = self._model.encode([_text(t) for t in texts], convert_to_numpy=True)
        return np.asarray(embeddings, np.float32)
