"""
COCO results as columns: loaded from the list of dicts once per evaluation, then shared by
every task (class-specific and agnostic scoring, FROC, the predictions file).

Boxes are COCO XYWH_ABS, float64; masks are COCO RLE dicts with `counts` a str (as
Detectron2's `instances_to_coco_json` writes them), or None for box-only results.
"""

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["Detections"]


@dataclass
class Detections:
    """
    N detections as columns.

    Attributes:
        image_id (np.ndarray): (N,) int64.
        category_id (np.ndarray): (N,) int64.
        score (np.ndarray): (N,) float64.
        bbox (np.ndarray): (N, 4) float64, XYWH_ABS.
        segmentation (list[dict] or None): N RLE dicts, or None without masks.
    """

    image_id: np.ndarray
    category_id: np.ndarray
    score: np.ndarray
    bbox: np.ndarray
    segmentation: list = None

    def __len__(self):
        return len(self.score)

    @classmethod
    def from_results(cls, results, masks=None):
        """
        Columns of checked COCO results (`validate.check_results`); a result without `bbox`
        gets the box of its mask, as pycocotools derives it.

        Args:
            results (list[dict]): COCO results.
            masks (bool): keep `segmentation`; default: when the first result has one.
        """
        n = len(results)
        if masks is None:
            masks = bool(results) and "segmentation" in results[0]
        ids = _id_column([r["image_id"] for r in results])
        cats = _id_column([r["category_id"] for r in results])
        scores = np.fromiter((r["score"] for r in results), np.float64, n)
        boxes = _boxes(results)
        segm = [r["segmentation"] for r in results] if masks else None
        return cls(ids, cats, scores, boxes, segm)

    @classmethod
    def from_model_results(cls, results):
        """
        Columns of a model's COCO results (Detectron2's `instances_to_coco_json`: int ids, a
        float score, a list of four floats as box, masks in every result or in none), or
        None for anything else (`validate.check_results` then takes the list).
        """
        try:
            if not _plain_types(results):
                return None
            return cls.from_results(results)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            return None

    @staticmethod
    def check_model_columns(dets, images, category_ids, need_segm):
        """
        Whether `from_model_results`' columns pass `validate.check_results`, vectorised: ids
        known, score a finite number in [0, 1], box four finite numbers with width and height
        >= 0 whose corner and area do not overflow, and, with masks, an RLE of the image's
        size with str counts. The counts are taken as pycocotools' encoder wrote them
        (Detectron2's `process` encodes every mask). False: `check_results` names the problem.

        Args:
            dets (Detections): from `from_model_results`.
            images (dict): image id -> (height, width).
            category_ids (set[int]): the known category ids.
            need_segm (bool): every result must have a mask.
        """
        try:
            if not _columns_valid(dets, images, category_ids):
                return False
            return not need_segm or _rle_sizes_valid(dets, images)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            return False

    def to_results(self):
        """The list of COCO result dicts (bbox as a list, and segmentation when present)."""
        out = [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(
                self.image_id.tolist(),
                self.category_id.tolist(),
                self.bbox.tolist(),
                self.score.tolist(),
            )
        ]
        if self.segmentation is not None:
            for r, m in zip(out, self.segmentation):
                r["segmentation"] = m
        return out

    def with_category(self, category_id):
        """The same detections, every one of the one category `category_id`."""
        return Detections(
            self.image_id,
            np.full(len(self), category_id, dtype=np.int64),
            self.score,
            self.bbox,
            self.segmentation,
        )

    def select(self, keep):
        """The detections where the (N,) bool array `keep` is true."""
        idx = np.flatnonzero(keep)
        segm = None if self.segmentation is None else [self.segmentation[i] for i in idx]
        return Detections(
            self.image_id[idx], self.category_id[idx], self.score[idx], self.bbox[idx], segm
        )

    def as_rows(self):
        """(N, 7) float64 rows [image_id, x, y, w, h, score, category_id] (hotcoco's load_res)."""
        return np.column_stack([self.image_id, self.bbox, self.score, self.category_id]).astype(
            np.float64
        )


def _id_column(values):
    """(N,) int64 ids, or an object array where some id is not an integer (a file name)."""
    try:
        return np.array(values, dtype=np.int64).reshape(len(values))
    except (TypeError, ValueError, OverflowError):
        return np.array(values + [None], dtype=object)[:-1]


def _boxes(results):
    """(N, 4) float64 `bbox` of each result; from its mask (pycocotools' toBbox) without one."""
    boxes = [r.get("bbox") for r in results]
    missing = [k for k, b in enumerate(boxes) if b is None]
    if missing:
        from pycocotools import mask as mask_util

        masks = [results[k]["segmentation"] for k in missing]
        for k, box in zip(missing, mask_util.toBbox(masks).tolist()):
            boxes[k] = box
    return np.array(boxes, dtype=np.float64).reshape(len(results), 4)


def _plain_types(results):
    """Every result a dict with int ids, a float score and a list of four float/int box values."""
    types = {type(r) for r in results}
    if types - {dict}:
        return False
    id_types = set(map(type, (r["image_id"] for r in results)))
    id_types |= set(map(type, (r["category_id"] for r in results)))
    score_types = set(map(type, (r["score"] for r in results)))
    boxes = [r["bbox"] for r in results]
    if set(map(type, boxes)) - {list} or any(len(b) != 4 for b in boxes):
        return False
    box_types = set(map(type, itertools.chain.from_iterable(boxes)))
    return id_types <= {int} and score_types <= {float, int} and box_types <= {float, int}


def _columns_valid(dets, images, category_ids):
    if len(dets) == 0:
        return True
    known_images = np.fromiter(images.keys(), np.int64, len(images))
    known_cats = np.fromiter(category_ids, np.int64, len(category_ids))
    x, y, w, h = dets.bbox.T
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(np.c_[dets.bbox, x + w, y + h, w * h]).all()
    return bool(
        np.isin(dets.image_id, known_images).all()
        and np.isin(dets.category_id, known_cats).all()
        and np.isfinite(dets.score).all()
        and ((dets.score >= 0) & (dets.score <= 1)).all()
        and finite
        and (dets.bbox[:, 2:] >= 0).all()
        and np.abs(dets.image_id).max() < 2**53  # hotcoco reads ids from float64 rows
    )


def _rle_sizes_valid(dets, images):
    segm = dets.segmentation
    if {type(s) for s in segm} - {dict} or {type(s["counts"]) for s in segm} - {str}:
        return False
    sizes = np.array([s["size"] for s in segm], dtype=np.int64).reshape(-1, 2)
    expected = np.array([images[i] for i in dets.image_id.tolist()], dtype=np.int64)
    return bool(np.array_equal(sizes, expected.reshape(-1, 2)))
