"""
Uncertainty of the report's table cells: spread over seeds and a bootstrap over test images.

A table row is a group of runs that differ only by `SEED` (and `OUTPUT_DIR`): its value is the
mean over those seeds, its spread their standard deviation. The bootstrap resamples the test
images of a dataset column (B resamples, the same B image multisets for every row of that
column, so two rows are paired), re-pools each run's `coco_instances_results.json` against the
ground truth with `ImageMatches` and averages the seeds: the interval is the percentile
interval of that seed mean; a paired difference is the interval of row A minus row B on the
same resamples. Values are percentages, as the tables.
"""

import itertools
import json
import os
import zlib

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from ..errors import CXRError
from .bootstrap import ImageMatches, percentile_interval, resample_weights
from .cocoeval import DEFAULT_MAX_DETS, agnostic_gt, agnostic_results, make_coco
from .ground_truth import check_ground_truth, image_sizes, load_ground_truth
from .validate import check_results

__all__ = ["TABLE_TASKS", "RESULTS_FILE", "bootstrap_tables", "paired_differences"]

RESULTS_FILE = "coco_instances_results.json"
# table stem -> (task for a class-specific dataset, for a class-agnostic one), as report._cell
TABLE_TASKS = {
    "table1_class_specific": ("bbox", None),
    "table2_class_agnostic": ("bbox_agnostic", "bbox"),
    "table3_instance_segmentation": ("segm", None),
}


def _ground_truth_source(record):
    """
    Where the ground truth the evaluator scored against is: its converted copy beside
    evaluation.json, else the dataset's registered json_file (paths), else the registered
    dataset itself ("dataset:<name>", converted as the evaluator does).
    """
    folder = os.path.dirname(record["_path"])
    converted = os.path.join(folder, f"{record['dataset']}_coco_format.json")
    if os.path.isfile(converted):
        return converted
    name = record["dataset"]
    if name not in DatasetCatalog.list():
        raise ValueError(f"no ground truth: no {converted}, and '{name}' is not registered")
    json_file = MetadataCatalog.get(name).get("json_file")
    if json_file and os.path.isfile(json_file):
        return json_file
    return f"dataset:{name}"


def _read_ground_truth(source):
    if source.startswith("dataset:"):
        try:
            return convert_to_coco_dict(source[len("dataset:") :])
        except CXRError:
            raise
        except Exception as e:  # a dataset whose files are missing: the loader's own error
            raise ValueError(f"no ground truth: {source} cannot be loaded ({e})") from None
    return load_ground_truth(source)


class _Loader:
    """Ground truths (each file read once) and ImageMatches per (evaluation, table)."""

    def __init__(self):
        self._gt = {}

    def _coco(self, path, agnostic):
        key = (path, agnostic)
        if key not in self._gt:
            gt = _read_ground_truth(path)
            check_ground_truth(gt, f"ground truth {path}")
            self._gt[key] = make_coco(agnostic_gt(gt) if agnostic else gt, "pycocotools")
        return self._gt[key]

    def matches(self, record, table):
        """ImageMatches of the record's task in `table`; ValueError says why there is none."""
        specific, agnostic_task = TABLE_TASKS[table]
        task = agnostic_task if record.get("agnostic_dataset") else specific
        results_path = os.path.join(os.path.dirname(record["_path"]), RESULTS_FILE)
        try:
            with open(results_path, encoding="utf-8") as f:
                results = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {results_path} ({e})") from None
        iou_type = task.split("_")[0]
        gt_path = _ground_truth_source(record)
        try:
            reference = self._coco(gt_path, False)
            results = check_results(
                results,
                set(reference.getCatIds()),
                image_sizes(reference.dataset),
                where=results_path,
                tasks=(iou_type,),
            )
            coco = self._coco(gt_path, task.endswith("_agnostic"))
        except CXRError as e:
            raise ValueError(str(e)) from None
        if task.endswith("_agnostic"):
            results = agnostic_results(results)
        max_dets = tuple(record.get("max_dets") or DEFAULT_MAX_DETS)
        return ImageMatches(coco, results, iou_type, max_dets)


def _weights(image_ids, resamples, seed):
    """The resamples of one image set: the same for every row scored on these images."""
    key = zlib.crc32(" ".join(str(i) for i in image_ids).encode())  # numpy or Python ints
    return resample_weights(len(image_ids), resamples, np.random.default_rng([seed, key]))


def bootstrap_tables(tables, metrics, resamples=1000, seed=0, level=0.95):
    """
    Bootstrap every cell of the report's tables.

    Args:
        tables: {table stem: {(row, dataset): [record, ...]}}, the records of each cell (one
            per seed); records as `report.collect` returns them.
        metrics: ((column name, metric key), ...), e.g. (("mAP", "AP"), ...).
        resamples (int): B; seed (int): of the resampling; level (float): of the intervals.

    Returns:
        (boot, problems): boot[table][(row, dataset)] = {"values": {name: (B,) percent},
        "interval": {name: (lo, hi)}, "images": (ids...)}; problems: [(path, reason)] of
        evaluations without an interval.
    """
    loader, boot, problems, weights = _Loader(), {}, [], {}
    for table, cells in tables.items():
        boot[table] = {}
        for cell, records in cells.items():
            per_seed, images = [], None
            for record in records:
                try:
                    m = loader.matches(record, table)
                except ValueError as e:
                    problems.append((record["_path"], str(e)))
                    break
                if images is not None and tuple(m.image_ids) != images:
                    problems.append((record["_path"], "its seeds were scored on other images"))
                    break
                images = tuple(m.image_ids)
                if images not in weights:
                    weights[images] = _weights(images, resamples, seed)
                values = m.metrics(weights[images], [key for _, key in metrics])
                per_seed.append({name: values[key] * 100 for name, key in metrics})
            else:
                if per_seed:
                    mean = {n: np.mean([s[n] for s in per_seed], axis=0) for n, _ in metrics}
                    boot[table][cell] = {
                        "values": mean,
                        "interval": {n: percentile_interval(v, level) for n, v in mean.items()},
                        "images": images,
                    }
    return boot, _unique(problems)


def _unique(problems):
    return list(dict.fromkeys(problems))


def paired_differences(boot, metrics, level=0.95):
    """
    Rows (table, dataset, row A, row B, metric, lo, hi) of the paired bootstrap interval of
    A - B, for every two rows of a table scored on the same images of a dataset (same
    resamples). The point difference comes from the tables (the caller's).
    """
    out = []
    for table, cells in boot.items():
        datasets = sorted({ds for _, ds in cells})
        for ds in datasets:
            rows = [row for row, d in cells if d == ds]
            for a, b in itertools.combinations(rows, 2):
                ca, cb = cells[(a, ds)], cells[(b, ds)]
                if ca["images"] != cb["images"]:
                    continue
                for name, _ in metrics:
                    diff = ca["values"][name] - cb["values"][name]
                    out.append((table, ds, a, b, name) + percentile_interval(diff, level))
    return out
