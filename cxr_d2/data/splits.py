"""Deterministic train/val/test splits grouped by patient, and the run's image manifest."""

import json
import logging
import os

import numpy as np

from ..errors import ConfigError, DatasetError

__all__ = [
    "SPLITS",
    "SPLIT_MODES",
    "SPLIT_SCHEMES",
    "split_by_group",
    "select_split",
    "MANIFEST_FILE",
    "write_manifest",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_MODES = ("random", "official")
# The run's manifest in OUTPUT_DIR: dataset name -> its image files.
MANIFEST_FILE = "split_manifest.json"
# The split schemes every source is registered with: name part -> (mode, seed). "" is the
# default (`<source>_train`); "official" is registered only for sources that publish a split.
SPLIT_SCHEMES = {
    "": ("random", 0),
    "seed1": ("random", 1),
    "seed2": ("random", 2),
    "seed3": ("random", 3),
    "seed4": ("random", 4),
    "official": ("official", 0),
}


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


def _files(record):
    """The image files of a record: one image, or a sequence's frames (`file_names`)."""
    return record["file_names"] if "file_names" in record else [record["file_name"]]


def write_manifest(path, datasets, update=False):
    """
    Write which images each dataset of a run holds, so a result traces to its exact images.

    Args:
        path (str): the JSON file to write.
        datasets (dict[str, list[dict]]): dataset name -> its Detectron2 dicts (images, or
            sequences whose frames are listed).
        update (bool): keep the other datasets of an existing manifest at `path`; the file
            is left untouched when it already holds these datasets' images.
    """
    manifest = {
        name: sorted({os.path.normpath(f) for d in dicts for f in _files(d)})
        for name, dicts in datasets.items()
    }
    if update and os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f)
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # written by an older or killed run: start anew
            logger.warning(f"{path} is unreadable ({e}); writing it anew")
            old = {}
        if all(old.get(name) == files for name, files in manifest.items()):
            return
        manifest = {**old, **manifest}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)


def _validated(mode, seed):
    if mode not in SPLIT_MODES:
        raise ConfigError(f"split mode {mode!r} is not one of {', '.join(SPLIT_MODES)}")
    try:
        return mode, int(seed)
    except (TypeError, ValueError):
        raise ConfigError(f"split seed {seed!r} is not an integer") from None


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
        seed (int): the split seed.
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
                f"{source} publishes no official split for some or all images; use the "
                "dataset name without '_official' for the seeded 80/10/10 split"
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

