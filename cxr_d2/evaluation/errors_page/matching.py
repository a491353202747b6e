"""
True positives, false positives and missed lesions per image at a score threshold, by the
evaluator's FROC hit criterion (`froc.froc_labels`), and the candidate pairs the page needs to
redo that matching in the browser.

The rule (docs/evaluation.md, FROC): class-specific; within one image and one class the
detections with `score >= threshold` are taken from the highest score down (ties in the order
of the results file); a detection is a true positive (TP) when its IoU (boxes, or masks for
"segm") with a not yet matched lesion of its class is at least `iou_thresh` (0.5 by default),
and it takes the lesion it overlaps most; every other detection is a false positive (FP), a
second detection of a found lesion included; one that only overlaps a crowd region is neither.
A missed lesion (FN) is a non-crowd ground truth no kept detection took: lesions - TP.
Boxes are COCO XYWH_ABS in the image's pixels.
"""

from collections import namedtuple

import numpy as np
from pycocotools import mask as mask_util

from ..froc import froc_labels

__all__ = ["Counts", "group_by_key", "count_errors", "candidate_pairs"]

# Per image (or in total): true positives, false positives, missed lesions, lesions.
Counts = namedtuple("Counts", ["tp", "fp", "fn", "lesions"])


def group_by_key(coco_gt, results):
    """
    ({(image_id, category_id): [annotation]}, {(image_id, category_id): [result]}), each list
    in file order (the order that breaks ties between equal scores).
    """
    gts, dets = {}, {}
    for a in coco_gt.dataset.get("annotations", []):
        gts.setdefault((a["image_id"], a["category_id"]), []).append(a)
    for r in results:
        dets.setdefault((r["image_id"], r["category_id"]), []).append(r)
    return gts, dets


def count_errors(coco_gt, results, threshold, iou_type="bbox", iou_thresh=0.5, category_ids=None):
    """
    Count TP, FP and missed lesions of every image at a score threshold.

    Args:
        coco_gt: pycocotools COCO of the dataset (every image, categories).
        results (list[dict]): checked COCO results with the ground truth's category ids.
        threshold (float): keep detections with `score >= threshold`.
        iou_type (str): "bbox" or "segm".
        iou_thresh (float): least IoU of a hit.
        category_ids (iterable[int]): count these categories only (default: all).

    Returns:
        dict: image_id -> Counts, for every image of `coco_gt`.
    """
    gts, dets = group_by_key(coco_gt, results)
    cats = set(coco_gt.getCatIds() if category_ids is None else category_ids)
    counts = {img: np.zeros(3, dtype=np.int64) for img in sorted(coco_gt.getImgIds())}
    for img, cat in set(gts) | set(dets):  # an image and class without either counts nothing
        if cat not in cats:
            continue
        kept = [d for d in dets.get((img, cat), []) if d["score"] >= threshold]
        _, labels, n = froc_labels(gts.get((img, cat), []), kept, iou_type, iou_thresh, coco_gt)
        counts[img] += [(labels == 1).sum(), (labels == 0).sum(), n]
    return {
        img: Counts(int(tp), int(fp), int(n - tp), int(n)) for img, (tp, fp, n) in counts.items()
    }


def _region(item, iou_type, coco_gt=None):
    """What pycocotools' `iou` compares: the box, or the mask (a ground truth's as RLE)."""
    if iou_type == "bbox":
        return item["bbox"]
    if coco_gt is not None and item.get("id") in coco_gt.anns and "image_id" in item:
        return coco_gt.annToRLE(item)
    return item["segmentation"]


def candidate_pairs(gts, dets, iou_type="bbox", iou_thresh=0.5, coco_gt=None):
    """
    The (lesion, IoU) pairs of each detection that could make it a hit, for the page's own
    matching of one image and one class.

    Args:
        gts (list[dict]): ground truth annotations of one image and class.
        dets (list[dict]): its detections.

    Returns:
        list[list[tuple[int, float]]]: per detection (in the order of `dets`), the indices into
        `gts` with IoU >= iou_thresh (crowd IoU as COCO: over the detection's area), and the
        IoU.
    """
    if not gts or not dets:
        return [[] for _ in dets]
    crowd = [int(g.get("iscrowd", 0)) for g in gts]
    ious = mask_util.iou(
        [_region(d, iou_type) for d in dets], [_region(g, iou_type, coco_gt) for g in gts], crowd
    )
    ious = np.asarray(ious).reshape(len(dets), len(gts))
    return [
        [(int(j), float(ious[i, j])) for j in np.flatnonzero(row >= iou_thresh)]
        for i, row in enumerate(ious)
    ]
