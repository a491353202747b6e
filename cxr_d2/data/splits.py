"""Deterministic train/val/test splits grouped by patient, and the split manifest."""

import json
import logging
import os

import numpy as np

from ..errors import ConfigError, DatasetError

__all__ = [
    "SPLITS",
    "SPLIT_MODES",
    "split_by_group",
    "split_options",
    "select_split",
    "write_manifest",
    "write_split_manifest",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_MODES = ("random", "official")
# Read at registration (on `import cxr_d2`) and stored in each dataset's metadata:
#   CXR_SPLIT_SEED  the seed of the random patient-grouped split (default 0);
#   CXR_SPLIT       "random" (default: 80/10/10 over every labelled image, grouped by patient)
#                   or "official" (the source's own train/test files; see datasets/README.md).
SEED_ENV, MODE_ENV = "CXR_SPLIT_SEED", "CXR_SPLIT"


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
        raise ValueError(
            f"split fractions {fractions} must be three non-negative numbers summing to 1"
        )
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


def split_options():
    """
    The split mode and seed from $CXR_SPLIT and $CXR_SPLIT_SEED, as raw strings.

    They are validated by :func:`select_split` when a dataset is loaded, so a bad value is an
    error of that dataset, not of `import cxr_d2`.

    Returns:
        dict: {"split_mode": str, "split_seed": str}.
    """
    return {
        "split_mode": os.getenv(MODE_ENV, "random").strip() or "random",
        "split_seed": os.getenv(SEED_ENV, "0").strip() or "0",
    }


def _validated(mode, seed):
    if mode not in SPLIT_MODES:
        raise ConfigError(f"${MODE_ENV}={mode!r}: must be one of {', '.join(SPLIT_MODES)}")
    try:
        return mode, int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"${SEED_ENV}={seed!r}: must be an integer") from None


def select_split(records, split, mode="random", seed=0, source="dataset"):
    """
    The records of one split.

    Args:
        records (list[dict]): every labelled image of a source, each with `patient_id`
            (the image's own id where the source has none) and, where the source publishes
            a split, `official_split` in {"train", "val", "test", "trainval"}.
        split (str): "train", "val" or "test".
        mode (str): "random": 80/10/10 over all records, grouped by patient, seeded; or
            "official": records keep their `official_split`; "trainval" records are cut 8:1
            into train and val by patient, seeded.
        seed (int or str): the split seed.
        source (str): the source name, for error messages.

    Returns:
        list[dict]: the records of `split`, in their original order, without `official_split`.
    """
    mode, seed = _validated(mode, seed)
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    if mode == "random":
        assignment = split_by_group([r["patient_id"] for r in records], seed=seed)
        chosen = [r for r in records if assignment[r["patient_id"]] == split]
    else:
        official = {r.get("official_split") for r in records}
        if None in official:
            raise DatasetError(
                f"{source} publishes no official split for some or all images; unset "
                f"${MODE_ENV} (or set it to 'random') to use the seeded 80/10/10 split"
            )
        pool = [r for r in records if r["official_split"] == "trainval"]
        inner = split_by_group([r["patient_id"] for r in pool], (8 / 9, 1 / 9, 0.0), seed)
        chosen = [
            r
            for r in records
            if r["official_split"] == split
            or (r["official_split"] == "trainval" and inner[r["patient_id"]] == split)
        ]
    out = []
    for r in chosen:
        r = dict(r)
        r.pop("official_split", None)
        out.append(r)
    return out


def write_split_manifest(path, source, mode, seed, splits):
    """
    Write which image of a source is in which split (best effort: a read-only dataset
    folder only gives a warning).

    Args:
        path (str): JSON file to write.
        splits (dict[str, list[dict]]): split -> records.
    """
    manifest = {
        "source": source,
        "split_mode": mode,
        "split_seed": int(seed),
        "splits": {
            s: sorted(os.path.normpath(d["file_name"]) for d in recs) for s, recs in splits.items()
        },
    }
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:
        logger.warning(f"could not write the split manifest {path}: {e.strerror}")
