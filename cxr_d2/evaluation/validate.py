"""
Checks on predictions before they are scored. The first prediction that cannot be scored
ends the run with one line naming where it is (file), its index, the key and what to do: a
partial set is never scored.

A prediction (COCO results format) has `image_id` (one of the dataset's), `category_id` (one
of its categories), `score` (a number in [0, 1]; a bool is not a number here), and `bbox`
(XYWH_ABS, four finite numbers, width and height >= 0: a zero-size box is allowed, as in COCO)
and/or `segmentation` (RLE of the image's size, or polygons; see `regions.py`). Every
prediction of a "segm" evaluation needs a `segmentation`.
"""

import json
import os

from ..errors import CXRError
from .regions import box_problem, is_finite_number, segmentation_problem, to_compressed_rle

__all__ = ["PredictionError", "check_results", "load_results_file"]

_JSON_TYPES = {
    dict: "object",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_BOX_HINT = "give [x, y, width, height] in pixels, width and height >= 0"


class PredictionError(CXRError):
    """Predictions that cannot be scored (names the file or image and what to do)."""


def _is_id(v):
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _score_problem(score):
    if not is_finite_number(score):
        return "which is not a finite number"
    if not 0 <= score <= 1:
        return "which is outside [0, 1]"
    return None


class _Checker:
    """The checks of one set of predictions; `entry(k, r)` returns the prediction to score."""

    def __init__(self, where, category_ids, images, contiguous, class_names, need_segm):
        self.where, self.category_ids, self.images = where, category_ids, images
        self.contiguous, self.need_segm = contiguous, need_segm
        self.known = (
            ", ".join(class_names) if class_names else ", ".join(map(str, sorted(category_ids)))
        )

    def fail(self, k, img, text):
        at = f"prediction {k}" if img is None else f"prediction {k} (image_id {img})"
        raise PredictionError(f"{self.where}: {at} {text}")

    def entry(self, k, r):
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                self.fail(
                    k,
                    None,
                    f"has no '{key}'; every prediction needs image_id, "
                    "category_id, score and a bbox or segmentation",
                )
        img = r["image_id"]
        if not _is_id(img) or img not in self.images:
            self.fail(
                k,
                None,
                f"is for image_id {img!r}, which the dataset does not have; "
                "evaluate the predictions on the dataset they were made on",
            )
        self.category(k, img, r["category_id"])
        problem = _score_problem(r["score"])
        if problem:
            self.fail(
                k,
                img,
                f"has the score {r['score']!r}, {problem}; give the model's "
                "confidence as a number in [0, 1]",
            )
        return self.regions(k, img, r)

    def category(self, k, img, cat):
        if not (_is_id(cat) and cat in self.category_ids):
            what = "class index" if self.contiguous else "category_id"
            self.fail(
                k,
                img,
                f"has {what} {cat!r}, which the dataset does not have (it has "
                f"{len(self.category_ids)}: {self.known}); use a model trained with this "
                "dataset's classes, or its _agnostic_ variant",
            )

    def regions(self, k, img, r):
        if "bbox" not in r and "segmentation" not in r:
            self.fail(k, img, "has no 'bbox' and no 'segmentation'; give one of them")
        if "bbox" in r:
            problem = box_problem(r["bbox"])
            if problem:
                self.fail(
                    k, img, f"has the box {r['bbox']!r} ('bbox'), which {problem}; " f"{_BOX_HINT}"
                )
        if "segmentation" not in r:
            if self.need_segm:
                self.fail(
                    k,
                    img,
                    "has no 'segmentation', which a mask (segm) evaluation needs; "
                    "give every prediction a mask, or evaluate boxes only",
                )
            return r
        height, width = self.images[img]
        problem = segmentation_problem(r["segmentation"], height, width)
        if problem:
            self.fail(
                k,
                img,
                f"'segmentation' {problem}; give a COCO RLE of the image's size "
                "(pycocotools.mask.encode) or polygons in its pixels",
            )
        return _normalized(r, height, width)


def _normalized(r, height, width):
    """`r` with a compressed RLE, and its box where it has none (as pycocotools derives it)."""
    from pycocotools import mask as mask_util

    rle = to_compressed_rle(r["segmentation"], height, width)
    if rle is r["segmentation"] and "bbox" in r:
        return r
    out = dict(r, segmentation=rle)
    if "bbox" not in out:
        out["bbox"] = mask_util.toBbox(dict(rle, counts=rle["counts"].encode())).tolist()
    return out


def check_results(
    results,
    category_ids,
    images,
    where,
    contiguous=False,
    class_names=None,
    tasks=("bbox",),
):
    """
    Check predictions before scoring; raise PredictionError at the first that cannot be scored.

    Args:
        results (list[dict]): COCO results (`image_id`, `category_id`, `score`, `bbox` XYWH
            and/or `segmentation`).
        category_ids (set[int]): the category ids the dataset has.
        images (dict): the dataset's image id -> (height, width).
        where (str): what the predictions are ("predictions of the model on dataset 'x'",
            or the file name), used in the message.
        contiguous (bool): ids are a model's class indices (the message then says so).
        class_names (list[str]): the dataset's classes, for the message.
        tasks (tuple[str]): the tasks scored; with "segm" every prediction needs a mask.

    Returns:
        list[dict]: the predictions to score: masks as compressed RLE, and every prediction
        with a `bbox` (from its mask where it had none). Unchanged entries are not copied.
    """
    checker = _Checker(
        where, set(category_ids), images, contiguous, class_names, "segm" in tuple(tasks)
    )
    out = []
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise PredictionError(
                f"{where}: prediction {k} is a {type(r).__name__}, not an object "
                "{image_id, category_id, bbox, score}; give a flat list of COCO results"
            )
        out.append(checker.entry(k, r))
    return out


def load_results_file(path):
    """Read a COCO results JSON (a list of predictions); PredictionError names the file."""
    if not os.path.isfile(path):
        raise PredictionError(f"predictions file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except UnicodeDecodeError as e:
        raise PredictionError(
            f"predictions file {path} is not UTF-8 text ({e.reason} at byte {e.start}); give "
            "the JSON the evaluator wrote (coco_instances_results.json)"
        ) from None
    except (OSError, ValueError) as e:
        raise PredictionError(
            f"predictions file {path} is not valid JSON ({e}); give the JSON the evaluator "
            "wrote (coco_instances_results.json), complete"
        ) from None
    if not isinstance(results, list):
        raise PredictionError(
            f"predictions file {path} must hold a JSON list of COCO results "
            "({image_id, category_id, bbox, score}), as coco_instances_results.json, "
            f"not a JSON {_JSON_TYPES.get(type(results), type(results).__name__)}"
        )
    return results
