"""Compares t2r's SequenceDataset with robomimic's own, item by item, on generated files.

Not a test (the suite never needs robomimic): run it where robomimic's source is
at hand, a checkout of github.com/ARISE-Initiative/robomimic or an installed
``robomimic``::

    PYTHONPATH=src .venv/bin/python scripts/robomimic_dataset_parity.py --robomimic_src ~/robomimic

Every combination of frame_stack, seq_length, both paddings, cache mode, goal
mode, action normalization, filter key and demo_limit is built by both; lengths,
observation and action normalization statistics and every item (obs, next_obs,
goal_obs exactly; actions, rewards, dones, pad_mask to 1e-6) must agree.
Combinations robomimic rejects (a demo too short for an unpadded window) are
skipped.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile

import numpy as np

from t2r.data.errors import DataError
from t2r.robomimic.dataset import SequenceDataset
from t2r.robomimic.hdf5 import Demo, write_robomimic_hdf5

LENGTHS = [7, 3, 12, 5, 9, 2, 11, 4, 6, 10, 8]


def write_file(directory: str) -> str:
    rng = np.random.default_rng(0)
    demos = [
        Demo(
            obs={"a": rng.normal(size=(n, 3)), "b": rng.normal(size=(n, 2)).astype(np.float32)},
            actions=rng.uniform(-1, 1, (n, 4)),
            rewards=rng.normal(size=n),
            dones=(np.arange(n) == n - 1).astype(np.int64),
        )
        for n in LENGTHS
    ]
    path = write_robomimic_hdf5(
        os.path.join(directory, "d.hdf5"),
        demos,
        {"env_name": "x", "type": 2, "env_kwargs": {}},
        masks={"sub": ["demo_10", "demo_2", "demo_3"]},
    )
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--robomimic_src", default=None, help="a robomimic checkout (else installed)"
    )
    args = parser.parse_args()
    if args.robomimic_src:
        sys.path.insert(0, args.robomimic_src)
    import robomimic.utils.dataset as robomimic_dataset
    import robomimic.utils.obs_utils as obs_utils

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["a", "b"]}})
    combos = itertools.product(
        [1, 3],
        [1, 4],
        [True, False],
        [True, False],
        ["all", "low_dim", None],
        [None, "last"],
        [None, "min_max", "gaussian"],
        [None, "sub"],
        [None, 2],
    )
    items = configs = rejected = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = write_file(tmp)
        for fs, sl, pfs, psl, cache, goal, norm, filt, limit in combos:
            kwargs = dict(
                frame_stack=fs,
                seq_length=sl,
                pad_frame_stack=pfs,
                pad_seq_length=psl,
                get_pad_mask=True,
                goal_mode=goal,
                hdf5_cache_mode=cache,
                hdf5_normalize_obs=True,
                filter_by_attribute=filt,
                demo_limit=limit,
            )
            config = {"actions": {"normalization": norm}}
            try:
                theirs = robomimic_dataset.SequenceDataset(
                    hdf5_path=path,
                    obs_keys=["a", "b"],
                    action_keys=["actions"],
                    dataset_keys=["actions", "rewards", "dones"],
                    action_config=config,
                    **kwargs,
                )
            except AssertionError:
                continue  # robomimic rejects this combination (a too-short demo)
            where = f"{kwargs} normalization={norm}"
            try:
                ours = SequenceDataset(path, ["a", "b"], action_config=config, **kwargs)  # type: ignore[arg-type]
            except DataError:
                # rejected up front; robomimic builds it but fails on some item
                failed = 0
                for i in range(len(theirs)):
                    try:
                        theirs[i]
                    except AssertionError:
                        failed += 1
                assert failed, f"{where}: t2r rejects it, robomimic serves every item"
                rejected += 1
                continue
            assert len(ours) == len(theirs), (where, len(ours), len(theirs))
            ours_stats, their_stats = (
                ours.get_obs_normalization_stats(),
                theirs.get_obs_normalization_stats(),
            )
            for key, stats in ours_stats.items():
                for field in ("offset", "scale"):
                    np.testing.assert_allclose(
                        stats[field], their_stats[key][field], rtol=1e-5, atol=1e-6
                    )
            ours_a, theirs_a = (
                ours.get_action_normalization_stats(),
                theirs.get_action_normalization_stats(),
            )
            for field in ("offset", "scale"):
                np.testing.assert_allclose(
                    ours_a["actions"][field], theirs_a["actions"][field], rtol=1e-6
                )
            for i in range(len(ours)):
                mine, reference = ours[i], theirs[i]
                for key in ("actions", "rewards", "dones", "pad_mask"):
                    expected = np.asarray(reference[key], dtype=np.float64).reshape(mine[key].shape)
                    np.testing.assert_allclose(
                        mine[key].astype(np.float64),
                        expected,
                        rtol=1e-5,
                        atol=1e-6,
                        err_msg=f"{where}: item {i} {key}",
                    )
                for group in ["obs", "next_obs"] + (["goal_obs"] if goal else []):
                    for key in ("a", "b"):
                        np.testing.assert_array_equal(
                            mine[group][key],
                            reference[group][key],
                            err_msg=f"{where}: item {i} {group}/{key}",
                        )
                items += 1
            configs += 1
    print(
        f"{configs} configurations, {items} items: t2r's SequenceDataset == robomimic's; "
        f"{rejected} configurations t2r rejects at construction where robomimic fails on an item"
    )


if __name__ == "__main__":
    main()
