"""Deterministic train/val/test splits grouped by patient, and the split manifest."""
import json
import os

import numpy as np

__all__ = ["SPLITS", "split_by_group", "write_manifest"]

SPLITS = ("train", "val", "test")


def split_by_group(groups, fractions=(0.8, 0.1, 0.1), seed=0):
    """
    Assign every group (a patient id, or the image itself when there is none) to one split.

    Groups are sorted, shuffled with `seed`, and cut at the cumulative fractions, so the
    result depends only on the set of groups and the seed, and no group is in two splits.

    Args:
        groups (Iterable[str]): group key of each record (repeats allowed).
        fractions (tuple[float, float, float]): train, val, test; they must sum to 1.
        seed (int): shuffling seed.

    Returns:
        dict[str, str]: group key -> "train" | "val" | "test".
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions {fractions} must be three non-negative numbers summing to 1")
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    cuts = np.round(np.cumsum(fractions)[:2] * len(unique)).astype(int)
    assignment = {}
    for rank, index in enumerate(order):
        split = SPLITS[int(np.searchsorted(cuts, rank, side="right"))]
        assignment[unique[index]] = split
    return assignment


def write_manifest(path, datasets):
    """
    Write which images each dataset of a run holds, so a result traces to its exact images.

    Args:
        path (str): the JSON file to write.
        datasets (dict[str, list[dict]]): dataset name -> its Detectron2 dicts.
    """
    manifest = {
        name: sorted({os.path.normpath(d["file_name"]) for d in dicts})
        for name, dicts in datasets.items()
    }
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)
