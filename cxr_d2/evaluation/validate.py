"""Checks on predictions before they are scored: known categories, finite boxes and scores."""

import json
import math
import os

from ..errors import CXRError

__all__ = ["PredictionError", "check_results", "load_results_file"]


class PredictionError(CXRError):
    """Predictions that cannot be scored (names the file or image and what to do)."""


def _finite(values):
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def check_results(results, category_ids, image_ids, where, contiguous=False, class_names=None):
    """
    Raise PredictionError at the first prediction that cannot be scored.

    Args:
        results (list[dict]): COCO results (`image_id`, `category_id`, `bbox` XYWH, `score`).
        category_ids (set[int]): the category ids the dataset has.
        image_ids (set[int]): the dataset's image ids.
        where (str): what the predictions are ("predictions of the model on dataset 'x'",
            or the file name), used in the message.
        contiguous (bool): ids are a model's class indices (the message then says so).
        class_names (list[str]): the dataset's classes, for the message.
    """
    known = ", ".join(class_names) if class_names else ", ".join(map(str, sorted(category_ids)))
    for k, r in enumerate(results):
        img = r.get("image_id")
        if img not in image_ids:
            raise PredictionError(
                f"{where}: prediction {k} is for image_id {img!r}, which the dataset does not "
                "have; evaluate the predictions on the dataset they were made on"
            )
        cat = r.get("category_id")
        if cat not in category_ids:
            what = "class index" if contiguous else "category_id"
            raise PredictionError(
                f"{where}: prediction {k} (image_id {img}) has {what} {cat!r}, which the "
                f"dataset does not have (it has {len(category_ids)}: {known}); use a model "
                "trained with this dataset's classes, or its _agnostic_ variant"
            )
        box = r.get("bbox")
        if box is not None and (len(box) != 4 or not _finite(box)):
            raise PredictionError(
                f"{where}: prediction {k} (image_id {img}) has the box {box}, which is not four "
                "finite numbers; the model's outputs are broken (check its training loss and "
                "weights)"
            )
        if box is None and "segmentation" not in r:
            raise PredictionError(f"{where}: prediction {k} (image_id {img}) has no bbox")
        if not _finite([r.get("score")]):
            raise PredictionError(
                f"{where}: prediction {k} (image_id {img}) has the score {r.get('score')!r}, "
                "which is not a finite number"
            )


def load_results_file(path):
    """Read a COCO results JSON (a list of predictions); PredictionError names the file."""
    if not os.path.isfile(path):
        raise PredictionError(f"predictions file {path} does not exist")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise PredictionError(f"predictions file {path} is not valid JSON ({e})") from None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise PredictionError(
            f"predictions file {path} must hold a JSON list of COCO results "
            "({image_id, category_id, bbox, score}), as coco_instances_results.json"
        )
    return results
