"""Small models and an in-memory input generator for the training-loop tests."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from t2r import specs
from t2r.models import (
    AbstractT2RModel,
    ClassificationModel,
    CriticModel,
    RegressionModel,
    TrainStepOutputs,
    average_gradients,
    polyak_update,
)
from t2r.modes import ModeKeys
from t2r.preprocessors import ImagePreprocessor


class TinyRegression(RegressionModel):
    """y = W x + b with dropout, so RNG state matters for resume equality."""

    def __init__(self, dropout: float = 0.1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden = nn.Linear(3, 16)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(16, 2)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((3,), torch.float32, name="x"))

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            target=specs.ExtendedTensorSpec((2,), torch.float32, name="t")
        )

    def a_func(self, features, mode, config=None, params=None):
        hidden = self.dropout(torch.relu(self.hidden(features.x)))
        output = self.out(hidden)
        self.add_golden_tensor("output_mean", output.mean())
        return {"inference_output": output}


class SeededInput:
    """Endless batches that depend only on the seed and the batch index."""

    def __init__(self, batch_size: int = 8, seed: int = 0, num_eval_batches: int = 3) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self.num_eval_batches = num_eval_batches
        self.mode: str | None = None

    def set_specification_from_model(self, t2r_model, mode: str) -> None:
        self.mode = mode

    def create_dataset(
        self, mode: str
    ) -> Iterator[tuple[specs.TensorSpecStruct, specs.TensorSpecStruct]]:
        generator = torch.Generator().manual_seed(self.seed + (0 if mode == ModeKeys.TRAIN else 1))
        count = 0
        while mode == ModeKeys.TRAIN or count < self.num_eval_batches:
            x = torch.rand(self.batch_size, 3, generator=generator)
            target = torch.stack([x[:, 0] + 2 * x[:, 1], x[:, 2] - x[:, 0]], dim=1)
            yield specs.TensorSpecStruct(x=x), specs.TensorSpecStruct(target=target)
            count += 1


class TinyClassifier(ClassificationModel):
    """Multi-label by default: random data has no valid class indices."""

    def __init__(self, multi_label: bool = True, **kwargs) -> None:
        super().__init__(num_classes=3, multi_label=multi_label, **kwargs)
        self.net = nn.Linear(4, 3)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(x=specs.ExtendedTensorSpec((4,), torch.float32, name="x"))

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        if self.multi_label:
            target = specs.ExtendedTensorSpec((3,), torch.float32, name="label")
        else:
            target = specs.ExtendedTensorSpec((), torch.int64, name="label")
        return specs.TensorSpecStruct(target=target)

    def a_func(self, features, mode, config=None, params=None):
        return {"logits": self.net(features.x)}


class TinyCritic(CriticModel):
    """Q(image, action) with a uint8 camera image turned to float by ImagePreprocessor."""

    default_preprocessor_cls = ImagePreprocessor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.image = nn.Conv2d(3, 4, 3, stride=2)
        self.q = nn.Linear(4 + 2, 1)

    def get_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            image=specs.ExtendedTensorSpec((8, 8, 3), torch.float32, name="state/image")
        )

    def get_action_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            pose=specs.ExtendedTensorSpec((2,), torch.float32, name="pose")
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
        )

    def q_func(self, features, mode, config=None, params=None):
        image = self.image(features.state.image.permute(0, 3, 1, 2)).mean(dim=(2, 3))
        q = self.q(torch.cat([image, features.action.pose], dim=-1))
        return {"q_predicted": q}


class TinyActorCritic(AbstractT2RModel):
    """DDPG in miniature: an actor, a critic, Polyak-averaged target copies of
    both, two optimizers and its own `train_step` (``owns_update``).

    TRAIN features are transitions (obs, action, next_obs) with a reward label;
    PREDICT features are the observation only, and the export is the actor.
    Deterministic (no exploration noise), so a torchrun run can be compared
    with one process on the ranks' batches put together.
    """

    owns_update = True

    def __init__(
        self,
        actor_lr: float = 1e-3,
        critic_lr: float = 2e-3,
        tau: float = 0.1,
        discount: float = 0.9,
        average: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.actor_lr, self.critic_lr = actor_lr, critic_lr
        self.tau, self.discount, self.average = tau, discount, average
        self.actor = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2), nn.Tanh())
        self.critic = nn.Sequential(nn.Linear(3 + 2, 16), nn.ReLU(), nn.Linear(16, 1))
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        spec = specs.TensorSpecStruct(obs=specs.ExtendedTensorSpec((3,), torch.float32, name="obs"))
        if mode != ModeKeys.PREDICT:
            spec.action = specs.ExtendedTensorSpec((2,), torch.float32, name="action")
            spec.next_obs = specs.ExtendedTensorSpec((3,), torch.float32, name="next_obs")
        return spec

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            reward=specs.ExtendedTensorSpec((1,), torch.float32, name="reward")
        )

    def q(self, critic: nn.Module, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1))

    def inference_network_fn(self, features, labels, mode, config=None, params=None):
        return {"action": self.actor(features.obs)}

    def critic_loss(self, features, labels) -> torch.Tensor:
        with torch.no_grad():
            next_q = self.q(
                self.target_critic, features.next_obs, self.target_actor(features.next_obs)
            )
            target = labels.reward + self.discount * next_q
        return F.mse_loss(self.q(self.critic, features.obs, features.action), target)

    def model_train_fn(self, features, labels, inference_outputs, mode, config=None, params=None):
        return self.critic_loss(features, labels)

    def create_optimizer(self):
        return {
            "actor": torch.optim.Adam(self.actor.parameters(), lr=self.actor_lr),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr),
        }

    def train_step(self, features, labels, optimizer, forward=None):
        features, labels = self.prepare_inputs(features, labels, ModeKeys.TRAIN)
        critic_loss = self.critic_loss(features, labels)
        optimizer["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        if self.average:
            average_gradients(self.critic)
        optimizer["critic"].step()

        actor_loss = -self.q(self.critic, features.obs, self.actor(features.obs)).mean()
        optimizer["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        if self.average:
            average_gradients(self.actor)
        optimizer["actor"].step()

        polyak_update(self.target_critic, self.critic, self.tau)
        polyak_update(self.target_actor, self.actor, self.tau)
        return TrainStepOutputs(
            loss=critic_loss.detach(),
            scalars={"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach()},
        )


class TransitionInput:
    """Endless seeded batches of transitions for TinyActorCritic.

    With `ranks`, each batch is the concatenation of the batches those ranks
    draw (rank r uses seed ``seed + r``): one process on ``ranks=(0, 1)`` sees
    what two torchrun ranks see together. By default a process under torchrun
    draws its own rank's batches.
    """

    def __init__(
        self, batch_size: int = 4, seed: int = 0, ranks: tuple[int, ...] | None = None
    ) -> None:
        self.batch_size, self.seed, self.ranks = batch_size, seed, ranks

    def set_specification_from_model(self, t2r_model, mode: str) -> None:
        pass

    def create_dataset(self, mode: str):
        ranks = self.ranks
        if ranks is None:
            ranks = (int(os.environ.get("RANK", "0")),)
        generators = [torch.Generator().manual_seed(self.seed + r) for r in ranks]
        while True:
            parts = [self._draw(g) for g in generators]
            features = specs.TensorSpecStruct(
                {k: torch.cat([p[0][k] for p in parts]) for k in ("obs", "action", "next_obs")}
            )
            labels = specs.TensorSpecStruct(reward=torch.cat([p[1] for p in parts]))
            yield features, labels

    def _draw(self, g: torch.Generator):
        b = self.batch_size
        obs, next_obs = torch.rand(b, 3, generator=g), torch.rand(b, 3, generator=g)
        action = torch.rand(b, 2, generator=g) * 2 - 1
        reward = -(action - obs[:, :2]).pow(2).sum(dim=1, keepdim=True)
        return {"obs": obs, "action": action, "next_obs": next_obs}, reward


class TinyRecurrentPolicy(AbstractT2RModel):
    """An LSTM policy (BC-RNN in miniature) whose state travels through exports.

    TRAIN/EVAL: observation sequences (B, T, 3) -> actions (B, T, 2), unrolled
    from the learned initial state (h0, c0). PREDICT: one step (B, 3) plus the
    network state ``h``, ``c`` (B, H) -> the action and the next state.
    """

    def __init__(self, hidden_size: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.lstm = nn.LSTM(3, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 2)
        self.h0 = nn.Parameter(0.5 * torch.randn(hidden_size))
        self.c0 = nn.Parameter(0.5 * torch.randn(hidden_size))

    def get_feature_specification(self, mode: str) -> specs.TensorSpecStruct:
        sequence = mode != ModeKeys.PREDICT
        return specs.TensorSpecStruct(
            obs=specs.ExtendedTensorSpec((3,), torch.float32, name="obs", is_sequence=sequence)
        )

    def get_label_specification(self, mode: str) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            action=specs.ExtendedTensorSpec((2,), torch.float32, name="action", is_sequence=True)
        )

    def get_network_state_specification(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(
            h=specs.ExtendedTensorSpec((self.hidden_size,), torch.float32, name="h"),
            c=specs.ExtendedTensorSpec((self.hidden_size,), torch.float32, name="c"),
        )

    def get_initial_network_state(self) -> specs.TensorSpecStruct:
        return specs.TensorSpecStruct(h=self.h0.detach(), c=self.c0.detach())

    def inference_network_fn(self, features, labels, mode, config=None, params=None):
        if mode == ModeKeys.PREDICT:
            state = features.network_state
            hidden = (state.h.unsqueeze(0).contiguous(), state.c.unsqueeze(0).contiguous())
            out, (h, c) = self.lstm(features.obs.unsqueeze(1), hidden)
            return {"action": self.head(out[:, 0]), "next_network_state": {"h": h[0], "c": c[0]}}
        batch = features.obs.shape[0]
        hidden = (
            self.h0.expand(1, batch, -1).contiguous(),
            self.c0.expand(1, batch, -1).contiguous(),
        )
        out, _ = self.lstm(features.obs, hidden)
        return {"action": self.head(out)}

    def model_train_fn(self, features, labels, inference_outputs, mode, config=None, params=None):
        return F.mse_loss(inference_outputs["action"], labels.action)

    def create_export_outputs_fn(
        self, features, inference_outputs, mode=None, config=None, params=None
    ):
        return {"action": inference_outputs["action"]}
