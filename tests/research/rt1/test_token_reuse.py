"""Token reuse: one new frame per step plus the cached image tokens gives the
actions of re-encoding the whole window, eager and exported, also in a fresh
process that has no model code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from t2r.export import export_saved_model
from t2r.modes import ModeKeys
from t2r.predictors import ExportedModelPredictor
from t2r.research.rt1 import RT1Model
from t2r.research.rt1.policy import RT1Policy
from t2r.train import seed_everything

STEPS = 9  # more than the window of 6: the cache shifts
REPO = Path(__file__).resolve().parents[3]


def _model(token_reuse: bool = True) -> RT1Model:
    seed_everything(0)
    return RT1Model(token_reuse=token_reuse).eval()


def _episode(model: RT1Model, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = model.image_size
    images = rng.integers(0, 256, (STEPS, h, w, 3), dtype=np.uint8)
    embedding = rng.standard_normal(model.embedding_size).astype(np.float32)
    return images, np.repeat(embedding[None], STEPS, axis=0)


def _recompute(
    model: RT1Model, images: np.ndarray, embeddings: np.ndarray
) -> dict[str, np.ndarray]:
    """Eager full recompute: step t re-encodes frames max(0, t-5)..t."""
    steps: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for t in range(STEPS):
            start = max(0, t + 1 - model.time_sequence_length)
            window = torch.from_numpy(images[None, start : t + 1])
            steps.append(
                model.predict_window(window, torch.from_numpy(embeddings[None, start : t + 1]))
            )
    keys = [*model.action_spec, "action_tokens", "action_logits"]
    return {k: np.concatenate([s[k].numpy() for s in steps]) for k in keys}


Recomputed = tuple[RT1Model, np.ndarray, np.ndarray, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def recomputed() -> Callable[[bool], Recomputed]:
    """The model, the episode and its eager full recompute for `token_reuse`, computed
    once per module (three tests compare against the token_reuse=True one)."""
    cache: dict[bool, Recomputed] = {}

    def get(token_reuse: bool) -> Recomputed:
        if token_reuse not in cache:
            model = _model(token_reuse)
            images, embeddings = _episode(model)
            cache[token_reuse] = (model, images, embeddings, _recompute(model, images, embeddings))
        return cache[token_reuse]

    return get


def test_eager_token_reuse_equals_recompute(recomputed):
    model, images, embeddings, expected = recomputed(True)
    state = {k: v[None] for k, v in model.get_initial_network_state().items()}
    stepped = []
    with torch.no_grad():
        for t in range(STEPS):
            features = {
                "observation/image": torch.from_numpy(images[t : t + 1]),
                "observation/natural_language_embedding": torch.from_numpy(embeddings[t : t + 1]),
                **{f"network_state/{k}": v for k, v in state.items()},
            }
            out = model.model_fn(features, None, ModeKeys.PREDICT)
            state = {
                k: out.export_outputs[f"next_network_state/{k}"]
                for k in ("image_tokens", "seq_idx")
            }
            assert int(state["seq_idx"]) == min(t + 1, 6)
            stepped.append(out.inference_outputs)
    logits = np.concatenate([s["action_logits"].numpy() for s in stepped])
    assert np.abs(logits - expected["action_logits"]).max() < 1e-4
    tokens = np.concatenate([s["action_tokens"].numpy() for s in stepped])
    assert np.array_equal(tokens, expected["action_tokens"])
    # The cache really is reused: without it (a fresh state each step) the actions differ.
    assert not np.allclose(logits[1:], expected["action_logits"][:1].repeat(STEPS - 1, 0))


def _policy_episode(
    policy: RT1Policy, images: np.ndarray, embeddings: np.ndarray
) -> dict[str, np.ndarray]:
    policy.reset()
    actions = [
        policy.select_action({"image": im, "natural_language_embedding": e})
        for im, e in zip(images, embeddings)
    ]
    return {k: np.stack([a[k] for a in actions]) for k in actions[0]}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[bool, Path]:
    """One export of each kind (token_reuse True / False), shared by the tests below."""
    root = tmp_path_factory.mktemp("rt1_exports")
    for token_reuse in (True, False):
        export_saved_model(_model(token_reuse), root / str(token_reuse), global_step=1)
    return {True: root / "True", False: root / "False"}


@pytest.mark.parametrize("token_reuse", [True, False])
def test_exported_policies_equal_the_eager_recompute(exports, recomputed, token_reuse):
    _, images, embeddings, expected = recomputed(token_reuse)
    predictor = ExportedModelPredictor(exports[token_reuse], timeout=0)
    assert predictor.restore()
    assert bool(predictor.initial_network_state()) == token_reuse
    policy = RT1Policy(predictor)
    got = _policy_episode(policy, images, embeddings)
    assert np.array_equal(got["action_tokens"], expected["action_tokens"])
    np.testing.assert_allclose(
        got["action/world_vector"], expected["action/world_vector"], atol=1e-6
    )
    # reset() starts a new episode: the same frames give the same actions again.
    again = _policy_episode(policy, images, embeddings)
    assert np.array_equal(again["action_tokens"], got["action_tokens"])


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from t2r.policies import RegressionPolicy
    from t2r.predictors import ExportedModelPredictor

    export_dir, episode, out = sys.argv[1:4]
    data = np.load(episode)
    predictor = ExportedModelPredictor(export_dir, timeout=0)
    assert predictor.restore()
    policy = RegressionPolicy(predictor=predictor, pack_features_fn=lambda o, c, t: o)
    tokens = []
    for image, embedding in zip(data["images"], data["embeddings"]):
        outputs = policy.predict({
            "observation/image": image[None],
            "observation/natural_language_embedding": embedding[None],
        })
        tokens.append(outputs["action_tokens"][0].tolist())
    loaded = sorted(m for m in sys.modules if m.startswith("t2r.research"))
    json.dump({"tokens": tokens, "research_modules": loaded}, open(out, "w"))
    """
)


def test_exported_token_reuse_in_a_fresh_process_without_the_model_code(
    tmp_path, exports, recomputed
):
    _, images, embeddings, expected = recomputed(True)
    np.savez(tmp_path / "episode.npz", images=images, embeddings=embeddings)
    script = tmp_path / "serve.py"
    script.write_text(_FRESH_PROCESS)
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            str(exports[True]),
            str(tmp_path / "episode.npz"),
            str(tmp_path / "out.json"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads((tmp_path / "out.json").read_text())
    assert served["research_modules"] == []  # RT1Model's code was never imported
    assert np.array_equal(np.array(served["tokens"]), expected["action_tokens"])
