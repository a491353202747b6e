"""
The honest tuning protocol: for each config on each dataset, pick the point with the best
mean score on the val split over its seeds, then score that point's runs on the test split
once (each seed's model_final.pth), and record both in `<root>/<stem>/<dataset>/selection.json`:

    metric, mode, chosen (point), points: [{point, folder, val: {seed: score}, val_mean, val_sd}],
    test: {seed: score}, test_mean, test_sd

Test scores of any other point never exist: a group whose test split was already scored for
another point is refused (re-picking after seeing test would leak it).
"""

import json
import os
import statistics

from ..errors import ConfigError
from .matrix import point_name
from .state import metrics_path, read_metric, record, run_state

__all__ = ["SELECTION_FILE", "groups", "choose", "write_selection", "mean_sd"]

SELECTION_FILE = "selection.json"


def groups(runs):
    """{(stem, dataset): [runs]} in the matrix's order."""
    out = {}
    for r in runs:
        out.setdefault(r.group, []).append(r)
    return out


def mean_sd(values):
    """(mean, sample standard deviation; 0 for one value) of `values`."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def choose(runs, metric, mode):
    """
    The chosen point of one group and the table of every point's val scores.

    Returns:
        (chosen point name, [{point, folder, val: {seed: score}, val_mean, val_sd}])
    Raises ConfigError when a run is unfinished or has no val score for `metric`.
    """
    table = {}
    for r in runs:
        state = run_state(r)
        if state != "finished":
            raise ConfigError(
                f"{r.output_dir} is {state}: select needs every run of {r.stem} on {r.dataset} "
                "finished; run the sweep first (tools/sweep.py status lists them)"
            )
        score = read_metric(r, r.val, metric)
        if score is None:
            raise ConfigError(
                f"{metrics_path(r, r.val)} has no number at tasks.{metric}; choose another "
                "select metric (e.g. bbox.AP, segm.AP)"
            )
        row = table.setdefault(point_name(r.point), {"point": r.point, "val": {}})
        row["val"][r.seed] = score
    rows = []
    for name, row in table.items():
        m, sd = mean_sd(list(row["val"].values()))
        rows.append({"folder": name, **row, "val_mean": m, "val_sd": sd})
    best = (max if mode == "max" else min)(rows, key=lambda row: row["val_mean"])
    return best["folder"], rows


def tested_points(runs):
    """Point folders of the group whose test split already has an evaluation.json."""
    return {point_name(r.point) for r in runs if os.path.isfile(metrics_path(r, r.test))}


def selection_path(runs):
    first = runs[0]
    return os.path.join(os.path.dirname(os.path.dirname(first.output_dir)), SELECTION_FILE)


def write_selection(runs, metric, mode, chosen, rows, sweep=None):
    """Record the selection (selection.json, `selected` in each run.json); return its dict."""
    test = {r.seed: read_metric(r, r.test, metric) for r in runs if point_name(r.point) == chosen}
    scored = [v for v in test.values() if v is not None]
    m, sd = mean_sd(scored) if scored else (None, None)
    data = {
        "metric": metric, "mode": mode, "chosen": chosen, "points": rows,
        "test": test, "test_mean": m, "test_sd": sd,
    }  # fmt: skip
    path = selection_path(runs)
    tmp = path + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    for r in runs:
        record(r, sweep, selected=point_name(r.point) == chosen)
    return data
