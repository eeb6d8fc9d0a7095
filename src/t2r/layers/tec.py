"""Task-Embedded Control Networks (James et al. 2018, https://arxiv.org/abs/1810.03237).

PyTorch counterparts of Tensor2Robot's ``layers/tec.py``: the networks that
embed a demonstration into a task embedding, and the contrastive losses that
pull an inference episode's embedding towards its own task's demonstration
(condition) embedding and away from other tasks'.

Networks (modules; T2R built them as functions in a variable scope):

* `FullStateEmbedding` = ``embed_fullstate``: (N, F) -> (N, embed_size), an MLP
  with layer norm and ReLU on the hidden layers.
* `ConditionImageEmbedding` = ``embed_condition_images``: (N, 3, H, W) ->
  (N, size), `ImagesToFeatures` (spatial softmax points, or feature maps) and
  optional fully connected (or 1x1 conv) layers.
* `TemporalEmbeddingReducer` = ``reduce_temporal_embeddings``: (N, T, F) ->
  (N, output_size): 1-D convolutions over time (kernel 10, no bias, ReLU,
  then layer norm), then flatten (``temporal_conv``), average over time
  (``temporal_conv_avg_after``) or, without convolutions, a plain mean
  (any other mode, T2R's ``'mean'``), then an MLP.

Losses (functions, T2R's semantics):

* `contrastive_loss` = TF's ``metric_learning.contrastive_loss``:
  ``mean(y d^2 + (1 - y) max(margin - d, 0)^2)``, d the L2 distance.
* `compute_embedding_contrastive_loss` = ``compute_embedding_contrastive_loss``
  with every mode (``default``, ``both_directions``, ``reverse_direction``,
  ``cross_entropy``, ``triplet``).
* `cosine_pairwise_distance`, `cosine_triplet_semihard_loss`: TF's semi-hard
  triplet loss with ``1 - cos`` as the distance.

Images are (N, C, H, W) as everywhere in t2r.layers (T2R: NHWC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from t2r.layers.mlp import mlp
from t2r.layers.vision import ImagesToFeatures

__all__ = [
    "CONTRASTIVE_LOSS_MODES",
    "ConditionImageEmbedding",
    "FullStateEmbedding",
    "TemporalEmbeddingReducer",
    "compute_embedding_contrastive_loss",
    "contrastive_loss",
    "cosine_pairwise_distance",
    "cosine_triplet_semihard_loss",
]

CONTRASTIVE_LOSS_MODES = (
    "default",
    "both_directions",
    "reverse_direction",
    "cross_entropy",
    "triplet",
)


class FullStateEmbedding(nn.Module):
    """Embeds non-image (pose) observations (T2R ``embed_fullstate``).

    Forward: fullstate (N, F) -> (N, embed_size).
    """

    def __init__(self, in_features: int, embed_size: int, fc_layers: Sequence[int] = (100,)):
        super().__init__()
        self.net = mlp(in_features, fc_layers, embed_size, layer_norm=True)

    def forward(self, fullstate: torch.Tensor) -> torch.Tensor:
        if fullstate.dim() != 2:
            raise ValueError(
                f"FullStateEmbedding: expected (N, F) states, got shape {tuple(fullstate.shape)}."
            )
        return self.net(fullstate)


class ConditionImageEmbedding(nn.Module):
    """Embeds each image of a batch on its own (T2R ``embed_condition_images``).

    Args:
      fc_layers: None for the tower's output alone; else hidden sizes and
        the output size last: fully connected layers after the spatial softmax
        points, or 1x1 convolutions on the feature maps without it.
      use_spatial_softmax: points (N, 2M) or feature maps (N, M, h, w).
      **tower_kwargs: `ImagesToFeatures` arguments (its layer-norm default is
        T2R's ``BuildImagesToFeaturesModel`` default here too).

    Forward: images (N, C, H, W) -> (N, fc_layers[-1]) (or (N, 2M)) with spatial
    softmax, (N, fc_layers[-1] or M, h, w) without.
    """

    def __init__(
        self,
        fc_layers: Sequence[int] | None = None,
        use_spatial_softmax: bool = True,
        **tower_kwargs: Any,
    ) -> None:
        super().__init__()
        self.tower = ImagesToFeatures(use_spatial_softmax=use_spatial_softmax, **tower_kwargs)
        self.head: nn.Module = nn.Identity()
        if fc_layers:
            if use_spatial_softmax:
                self.head = mlp(
                    self.tower.out_features, fc_layers[:-1], fc_layers[-1], layer_norm=True
                )
            else:
                layers: list[nn.Module] = []
                width = self.tower.num_output_maps
                for units in fc_layers[:-1]:
                    layers += [nn.Conv2d(width, units, 1), nn.GroupNorm(1, units), nn.ReLU()]
                    width = units
                layers.append(nn.Conv2d(width, fc_layers[-1], 1))
                self.head = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(
                "ConditionImageEmbedding: expected (N, C, H, W) images (fold a meta-batch "
                f"into N first), got shape {tuple(images.shape)}."
            )
        features, _ = self.tower(images)
        return self.head(features)


class TemporalEmbeddingReducer(nn.Module):
    """Reduces per-step embeddings of an episode to one vector (T2R
    ``reduce_temporal_embeddings``).

    Args:
      in_features: F.
      output_size: the output embedding's size.
      sequence_length: T; needed by ``temporal_conv`` (flatten) only.
      conv1d_layers: filters of each temporal convolution (kernel 10, valid).
      fc_hidden_layers: hidden sizes of the final MLP.
      combine_mode: ``temporal_conv`` (flatten), ``temporal_conv_avg_after``, or
        anything else for a mean over time without convolutions.
      kernel_size: the temporal convolutions' width (T2R: 10).

    Forward: (N, T, F), or (N, T, h, w, F) maps averaged over space first,
    -> (N, output_size).
    """

    def __init__(
        self,
        in_features: int,
        output_size: int,
        sequence_length: int | None = None,
        conv1d_layers: Sequence[int] | None = (64,),
        fc_hidden_layers: Sequence[int] = (100,),
        combine_mode: str = "temporal_conv",
        kernel_size: int = 10,
    ) -> None:
        super().__init__()
        self.combine_mode = combine_mode
        self.use_conv = "temporal_conv" in combine_mode
        self.flatten = combine_mode == "temporal_conv"
        convs: list[nn.Module] = []
        width = in_features
        steps = sequence_length
        if self.use_conv:
            for filters in conv1d_layers or ():
                convs.append(nn.Conv1d(width, filters, kernel_size, bias=False))
                # slim layer_norm on (N, T, C): over T and C jointly, per-channel affine.
                convs.append(nn.GroupNorm(1, filters))
                width = filters
                steps = None if steps is None else steps - kernel_size + 1
            if self.flatten:
                minimum = len(conv1d_layers or ()) * (kernel_size - 1) + 1
                if steps is None or steps < 1:
                    raise ValueError(
                        "TemporalEmbeddingReducer: combine_mode 'temporal_conv' flattens the "
                        f"convolved sequence, so it needs a sequence_length of at least "
                        f"{minimum}, got {sequence_length}."
                    )
                width *= steps
        self.convs = nn.ModuleList(convs)
        self.sequence_length = sequence_length
        self.mlp = mlp(width, fc_hidden_layers, output_size, layer_norm=True)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        if embedding.dim() == 5:
            embedding = embedding.mean(dim=(2, 3))
        if embedding.dim() != 3:
            raise ValueError(
                "TemporalEmbeddingReducer: expected (N, T, F) (or (N, T, h, w, F)) embeddings, "
                f"got shape {tuple(embedding.shape)}."
            )
        if not self.use_conv:
            return self.mlp(embedding.mean(dim=1))
        net = embedding.transpose(1, 2)
        for i in range(0, len(self.convs), 2):
            conv, norm = self.convs[i], self.convs[i + 1]
            # T2R: conv1d with ReLU, then layer norm.
            net = norm(torch.relu(conv(net)))
        # (N, C, T') -> T2R's flatten order of (N, T', C), or the mean over time.
        net = net.transpose(1, 2).flatten(1) if self.flatten else net.mean(dim=2)
        return self.mlp(net)


# ----------------------------------------------------------------- losses
def contrastive_loss(
    labels: torch.Tensor,
    anchor: torch.Tensor,
    positive: torch.Tensor,
    margin: float = 1.0,
) -> torch.Tensor:
    """TF ``metric_learning.contrastive_loss``: pairs pulled together or pushed apart.

    labels (N,) bool or 0/1 (1: same class); anchor (N, K) or (1, K), broadcast
    against positive (N, K). Returns ``mean(y d^2 + (1 - y) max(margin - d, 0)^2)``
    with d the L2 distance of each pair.
    """
    distances = (anchor - positive).pow(2).sum(dim=1).sqrt()
    y = labels.to(distances.dtype)
    hinge = torch.clamp(margin - distances, min=0.0)
    return (y * distances.pow(2) + (1.0 - y) * hinge.pow(2)).mean()


def cosine_pairwise_distance(feature: torch.Tensor) -> torch.Tensor:
    """(B, K) unit vectors -> (B, B) ``1 - v_i . v_j``, the diagonal set to 0."""
    distances = 1.0 - feature @ feature.T
    eye = torch.eye(feature.shape[0], dtype=torch.bool, device=feature.device)
    return distances.masked_fill(eye, 0.0)


def cosine_triplet_semihard_loss(
    labels: torch.Tensor, embeddings: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """TF's semi-hard triplet loss with the cosine distance (T2R's reproduction).

    For every anchor a and positive p (same label, p != a): the negative is the
    closest one farther from a than p (semi-hard), or, when there is none, the
    farthest negative; the loss is the mean over (a, p) of
    ``max(margin + d(a, p) - d(a, n), 0)``.

    labels (B,) int; embeddings (B, K), unit norm.
    """
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"cosine_triplet_semihard_loss: labels {tuple(labels.shape)} must be (B,) for "
            f"embeddings {tuple(embeddings.shape)}."
        )
    dist = cosine_pairwise_distance(embeddings)
    same = labels[:, None] == labels[None, :]
    negative = ~same
    # candidate[a, p, n]: n is a negative of a farther from a than p.
    candidate = negative[:, None, :] & (dist[:, None, :] > dist[:, :, None])
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    outside = torch.where(candidate, dist[:, None, :], inf).amin(dim=2)
    inside = torch.where(negative, dist, -inf).amax(dim=1, keepdim=True).expand_as(dist)
    semi_hard = torch.where(candidate.any(dim=2), outside, inside)
    positives = same & ~torch.eye(len(labels), dtype=torch.bool, device=dist.device)
    losses = torch.clamp(margin + dist - semi_hard, min=0.0)
    return torch.where(positives, losses, torch.zeros_like(losses)).sum() / positives.sum()


def compute_embedding_contrastive_loss(
    inf_embedding: torch.Tensor,
    con_embedding: torch.Tensor,
    positives: torch.Tensor | None = None,
    contrastive_loss_mode: str = "both_directions",
) -> torch.Tensor:
    """TEC's embedding loss between inference and condition episodes (T2R's modes).

    inf_embedding (num_tasks, num_inf_episodes, K), con_embedding (num_tasks,
    num_con_episodes, K), L2-normalized; each is averaged over its episodes.
    The anchor is task 0: `positives` (num_tasks,) bool says which tasks count
    as task 0's (default: task 0 alone).

    * ``default``: `contrastive_loss` of the anchor inference embedding against
      every condition embedding;
    * ``reverse_direction``: the anchor condition embedding against every
      inference embedding;
    * ``both_directions``: the sum of the two (T2R's default);
    * ``cross_entropy``: binary cross-entropy of ``2 * cos`` logits, both
      directions summed;
    * ``triplet``: `cosine_triplet_semihard_loss` (margin 1) over inference and
      condition embeddings together, labels `positives` (default: the task
      index, 0..num_tasks-1) for both halves.
    """
    for name, value in (("inf_embedding", inf_embedding), ("con_embedding", con_embedding)):
        if value.dim() != 3:
            raise ValueError(
                f"compute_embedding_contrastive_loss: {name} must be (num_tasks, episodes, K), "
                f"got shape {tuple(value.shape)}."
            )
    avg_inf = inf_embedding.mean(dim=1)
    avg_con = con_embedding.mean(dim=1)
    num_tasks = avg_con.shape[0]
    if positives is not None:
        labels = positives
    else:
        labels = torch.arange(num_tasks, device=avg_con.device) == 0
    anchor_inf, anchor_con = avg_inf[:1], avg_con[:1]
    if contrastive_loss_mode == "default":
        return contrastive_loss(labels, anchor_inf, avg_con)
    if contrastive_loss_mode == "both_directions":
        return contrastive_loss(labels, anchor_inf, avg_con) + contrastive_loss(
            labels, anchor_con, avg_inf
        )
    if contrastive_loss_mode == "reverse_direction":
        return contrastive_loss(labels, anchor_con, avg_inf)
    if contrastive_loss_mode == "cross_entropy":
        temperature = 2.0
        targets = labels.to(avg_inf.dtype)
        bce = nn.functional.binary_cross_entropy_with_logits
        loss_1 = bce(temperature * (anchor_inf * avg_con).sum(dim=1), targets)
        loss_2 = bce(temperature * (anchor_con * avg_inf).sum(dim=1), targets)
        return loss_1 + loss_2
    if contrastive_loss_mode == "triplet":
        task_ids = (
            positives
            if positives is not None
            else torch.arange(avg_inf.shape[0], device=avg_inf.device)
        )
        return cosine_triplet_semihard_loss(
            task_ids.repeat(2), torch.cat([avg_inf, avg_con]), margin=1.0
        )
    raise ValueError(
        f"compute_embedding_contrastive_loss: contrastive_loss_mode must be one of "
        f"{CONTRASTIVE_LOSS_MODES}, got {contrastive_loss_mode!r}."
    )
