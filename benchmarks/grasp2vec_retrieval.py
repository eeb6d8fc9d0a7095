"""Grasp2Vec on the grasp env: retrieval of the grasped object among the scene's objects.

Collects (or loads) successful scripted grasps (`collect_grasp_triplets`),
trains `Grasp2VecModel` with T2R's n-pairs loss, and reports, on held-out
grasps (new env seeds, so new objects), how often the grasped object's image
scores highest by ``(phi_s(pre) - phi_s(post)) . phi_o(object)`` among the
images of all N objects that were in the scene (chance 1/N), before and after
training. Non-learned baselines score the same candidates with raw pixels,
``(pre - post) . (object - mean object)`` on the images as float vectors (it
knows where the object lay), and with the images' mean colours (it does not).
``--steps 0`` prints the baselines and the untrained model only.

    .venv/bin/python benchmarks/grasp2vec_retrieval.py --data-dir runs/grasp2vec

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from t2r.modes import ModeKeys
from t2r.research.grasp2vec import Grasp2VecModel, retrieval_scores
from t2r.research.grasp2vec.data import GOAL_KINDS, GraspTriplets, collect_grasp_triplets

logger = logging.getLogger("grasp2vec_retrieval")


def _triplets(path: Path | None, num: int, seed: int, args: argparse.Namespace) -> GraspTriplets:
    if path is not None and path.exists():
        triplets = GraspTriplets.load(path)
        if len(triplets) >= num:
            return triplets.subset(slice(0, num))
    triplets = collect_grasp_triplets(
        num, num_objects=args.objects, image_size=args.image_size, seed=seed
    )
    if path is not None:
        triplets.save(path)
    return triplets


def _to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., S, S, 3) -> float (..., 3, S, S) in [0, 1]."""
    return torch.from_numpy(images).float().div(255).movedim(-1, -3)


@torch.no_grad()
def retrieval_accuracy(model: Grasp2VecModel, test: GraspTriplets) -> float:
    """Fraction of grasps whose object scores highest among the scene's objects."""
    model.eval()
    pre, _ = model.scene_tower(_to_float(test.pregrasp))
    post, _ = model.scene_tower(_to_float(test.postgrasp))
    b, n = test.objects.shape[:2]
    goals, _ = model.goal_tower(_to_float(test.objects.reshape(b * n, *test.objects.shape[2:])))
    scores = retrieval_scores(pre, post, goals.reshape(b, n, -1))
    return float((scores.argmax(1).numpy() == test.grasped).mean())


def pixel_baseline(test: GraspTriplets) -> float:
    b, n = test.objects.shape[:2]
    query = (_to_float(test.pregrasp) - _to_float(test.postgrasp)).reshape(b, -1)
    candidates = _to_float(test.objects).reshape(b, n, -1)
    # Subtract the empty-bin background shared by the candidates: the mean image.
    candidates = candidates - candidates.mean(dim=1, keepdim=True)
    scores = torch.einsum("bd,bnd->bn", query, candidates)
    return float((scores.argmax(1).numpy() == test.grasped).mean())


def colour_baseline(test: GraspTriplets) -> float:
    """Like `pixel_baseline` on each image's mean colour: no position, as Grasp2Vec's
    mean-pooled vectors."""
    query = (_to_float(test.pregrasp) - _to_float(test.postgrasp)).mean(dim=(-2, -1))
    candidates = _to_float(test.objects).mean(dim=(-2, -1))
    candidates = candidates - candidates.mean(dim=1, keepdim=True)
    scores = torch.einsum("bd,bnd->bn", query, candidates)
    return float((scores.argmax(1).numpy() == test.grasped).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=1500, help="training grasps")
    parser.add_argument("--test", type=int, default=400, help="held-out grasps")
    parser.add_argument("--objects", type=int, default=4, help="objects per scene")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-filters", type=int, default=16)
    parser.add_argument("--goal", choices=GOAL_KINDS, default="at_rest")
    parser.add_argument("--data-dir", type=Path, default=None, help="cache of the triplets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    data_dir = args.data_dir
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
    train = _triplets(data_dir and data_dir / "train.npz", args.train, 0, args)
    test = _triplets(data_dir and data_dir / "test.npz", args.test, 100_000, args)
    logger.info(
        "data: %d train, %d test grasps (%.0f s)",
        len(train),
        len(test),
        time.perf_counter() - start,
    )

    model = Grasp2VecModel(
        scene_size=args.image_size,
        goal_size=args.image_size,
        tower_kwargs={"num_filters": args.num_filters},
        create_optimizer_fn=lambda p: torch.optim.Adam(p, lr=args.lr),
    )
    optimizer = model.create_optimizer()
    untrained = retrieval_accuracy(model, test)
    goals = train.goal_images(args.goal)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        index = rng.choice(len(train), size=args.batch, replace=False)
        batch = {
            "pregrasp_image": torch.from_numpy(train.pregrasp[index]),
            "postgrasp_image": torch.from_numpy(train.postgrasp[index]),
            "goal_image": torch.from_numpy(goals[index]),
        }
        model.train()
        outputs = model.train_step(batch, {}, optimizer)
        if step % 100 == 0 or step == args.steps:
            accuracy = retrieval_accuracy(model, test)
            logger.info(
                "step %d loss %.3f test retrieval %.3f", step, float(outputs.loss), accuracy
            )
    train_seconds = time.perf_counter() - start
    trained = retrieval_accuracy(model, test)
    train_accuracy = retrieval_accuracy(model, train.subset(slice(0, len(test))))
    with torch.no_grad():
        model.eval()
        held = {
            "pregrasp_image": torch.from_numpy(test.pregrasp[: args.batch]),
            "postgrasp_image": torch.from_numpy(test.postgrasp[: args.batch]),
            "goal_image": torch.from_numpy(test.goal_images(args.goal)[: args.batch]),
        }
        batch_accuracy = float(
            model.model_fn(held, {}, ModeKeys.EVAL).eval_metrics["batch_retrieval_accuracy"]
        )
    n = test.objects.shape[1]
    print(
        f"\nGrasp2Vec retrieval, {len(train)} train / {len(test)} held-out grasps, {n} objects "
        f"per scene, {args.image_size} px, goal '{args.goal}', {args.steps} steps of "
        f"{args.batch} ({train_seconds:.0f} s)\n"
    )
    print("| scorer | grasped object ranked first among the scene's objects |")
    print("|---|---:|")
    print(f"| chance (1/{n}) | {1 / n:.3f} |")
    print(f"| raw pixels, (pre - post) . object | {pixel_baseline(test):.3f} |")
    print(f"| mean colour, (pre - post) . object | {colour_baseline(test):.3f} |")
    print(f"| Grasp2Vec, untrained | {untrained:.3f} |")
    print(f"| Grasp2Vec, trained (held-out grasps) | **{trained:.3f}** |")
    print(f"| Grasp2Vec, trained (training grasps) | {train_accuracy:.3f} |")
    print(
        f"\nIn-batch retrieval of the goal image among {args.batch} held-out goals "
        f"(chance {1 / args.batch:.3f}): {batch_accuracy:.3f}"
    )


if __name__ == "__main__":
    main()
