"""
FROC: lesion sensitivity against false positives per image, per class and overall.

Hit criterion (documented in docs/evaluation.md): within one image and one class, the
detections are taken from the highest score down; a detection is a true positive when its IoU
(boxes, or masks for "segm") with a not yet matched lesion of its class is at least
`iou_thresh` (0.5 by default), and it takes the lesion it overlaps most. Every other detection
is a false positive, a second detection of an already found lesion included. Detections that
only overlap a crowd annotation (`iscrowd`, IoU as COCO: intersection over the detection's
area) are neither. Because matching goes down the scores, the label of a detection does not
depend on any lower-scored one, so one pass gives every operating point.

Operating points are the score thresholds between distinct scores (tied scores are kept or
dropped together). Sensitivity at a rate r is the highest sensitivity of an operating point
with at most r false positives per image (the step FROC curve, no interpolation). The number
of images is every image of the dataset, with or without lesions. "overall" pools the
class-aware decisions of all classes: sensitivity over all lesions, false positives of all
classes per image.
"""

import math

import numpy as np
from pycocotools import mask as mask_util

from .output import write_output

__all__ = ["FP_RATES", "froc_labels", "froc_curve", "sensitivity_at", "compute_froc", "plot_froc"]


# False positives per image at which sensitivity is reported (and averaged).
FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _region(ann, iou_type, coco_gt=None):
    if iou_type == "bbox":
        return ann["bbox"]
    if coco_gt is not None and "image_id" in ann and "id" in ann and ann["id"] in coco_gt.anns:
        return coco_gt.annToRLE(ann)
    return ann["segmentation"]


def froc_labels(gts, dets, iou_type="bbox", iou_thresh=0.5, coco_gt=None):
    """
    Label the detections of one image and one class.

    Args:
        gts (list[dict]): ground truth annotations (`bbox` XYWH_ABS or `segmentation`,
            `iscrowd`).
        dets (list[dict]): detections (`score`, `bbox` XYWH_ABS or `segmentation` RLE).
        iou_type (str): "bbox" or "segm".
        iou_thresh (float): least IoU of a hit.
        coco_gt: the ground truth COCO object, to turn polygons into RLE.

    Returns:
        tuple(np.ndarray, np.ndarray, int): scores (D,), labels (D,) with 1 = true positive,
        0 = false positive, -1 = ignored (hits only a crowd region), and the number of lesions
        (non-crowd ground truths).
    """
    order = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])
    dets = [dets[i] for i in order]
    scores = np.array([d["score"] for d in dets], dtype=np.float64)
    crowd = [int(g.get("iscrowd", 0)) for g in gts]
    num_lesions = len(gts) - sum(crowd)
    labels = np.zeros(len(dets), dtype=np.int64)
    if not dets or not gts:
        return scores, labels, num_lesions
    g_regions = [_region(g, iou_type, coco_gt) for g in gts]
    d_regions = [_region(d, iou_type) for d in dets]
    ious = np.asarray(mask_util.iou(d_regions, g_regions, crowd)).reshape(len(dets), len(gts))
    matched = np.zeros(len(gts), dtype=bool)
    is_crowd = np.array(crowd, dtype=bool)
    # Only detections overlapping some annotation enough need the greedy pass.
    for i in np.flatnonzero((ious >= iou_thresh).any(axis=1)):
        free = (~matched) & (~is_crowd) & (ious[i] >= iou_thresh)
        if free.any():
            j = int(np.argmax(np.where(free, ious[i], -1.0)))
            matched[j] = True
            labels[i] = 1
        elif (is_crowd & (ious[i] >= iou_thresh)).any():
            labels[i] = -1
    return scores, labels, num_lesions


def froc_curve(scores, labels, num_lesions, num_images):
    """
    The FROC operating points of labelled detections pooled over images.

    Args:
        scores (np.ndarray): (D,) detection scores.
        labels (np.ndarray): (D,) 1 true positive, 0 false positive, -1 ignored.
        num_lesions (int): lesions in the dataset (the sensitivity's denominator).
        num_images (int): images in the dataset (the false positive rate's denominator).

    Returns:
        tuple(np.ndarray, np.ndarray, np.ndarray): false positives per image, sensitivity and
        score threshold of each operating point, starting with (0, 0, inf).
    """
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels == 1)
    fp = np.cumsum(labels == 0)
    # Cut only after the last detection of a run of equal scores.
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    fppi = np.r_[0.0, fp[last] / max(num_images, 1)]
    sens = np.r_[0.0, tp[last] / num_lesions] if num_lesions else np.full(last.sum() + 1, np.nan)
    thresholds = np.r_[np.inf, scores[last]]
    return fppi, sens, thresholds


def sensitivity_at(fppi, sens, rates=FP_RATES):
    """Highest sensitivity at or below each false-positive rate (step curve)."""
    return [float(np.max(sens[fppi <= r])) for r in rates]


def compute_froc(coco_gt, results, iou_type="bbox", iou_thresh=0.5, rates=FP_RATES):
    """
    FROC of COCO results against a COCO ground truth, per class and overall.

    Args:
        coco_gt: pycocotools COCO object (every image of the dataset, categories).
        results (list[dict]): COCO results with the ground truth's category ids.
        iou_type (str): "bbox" or "segm".

    Returns:
        dict: `fp_rates`, `iou_thresh`, `num_images`, and `classes`: {name or "overall":
        {"sensitivity": [per rate], "mean": float, "num_lesions": int, "fppi": [...],
        "sens": [...]}}; sensitivities are fractions, NaN where a class has no lesion;
        `fppi`/`sens` are the vertices of the step curve (the first operating point of each
        sensitivity, and the last one).
    """
    img_ids = sorted(coco_gt.getImgIds())
    cats = sorted(coco_gt.getCatIds())
    by_key, gt_by_key = {}, {}
    for r in results:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r)
    for a in coco_gt.dataset.get("annotations", []):
        gt_by_key.setdefault((a["image_id"], a["category_id"]), []).append(a)
    pooled = {"scores": [], "labels": [], "lesions": 0}
    classes = {}
    for cat in cats:
        cat_scores, cat_labels, cat_lesions = [], [], 0
        for img in img_ids:
            gts, dets = gt_by_key.get((img, cat), []), by_key.get((img, cat), [])
            s, lab, n = froc_labels(gts, dets, iou_type, iou_thresh, coco_gt)
            cat_scores.append(s)
            cat_labels.append(lab)
            cat_lesions += n
        s, lab = np.concatenate(cat_scores), np.concatenate(cat_labels)
        classes[coco_gt.cats[cat]["name"]] = _entry(s, lab, cat_lesions, len(img_ids), rates)
        pooled["scores"].append(s)
        pooled["labels"].append(lab)
        pooled["lesions"] += cat_lesions
    s = np.concatenate(pooled["scores"]) if cats else np.zeros(0)
    lab = np.concatenate(pooled["labels"]) if cats else np.zeros(0, dtype=np.int64)
    classes["overall"] = _entry(s, lab, pooled["lesions"], len(img_ids), rates)
    return {
        "fp_rates": list(rates),
        "iou_thresh": iou_thresh,
        "iou_type": iou_type,
        "num_images": len(img_ids),
        "classes": classes,
    }


def _entry(scores, labels, num_lesions, num_images, rates):
    fppi, sens, _ = froc_curve(scores, labels, num_lesions, num_images)
    if num_lesions == 0:
        values = [math.nan] * len(rates)
    else:
        values = sensitivity_at(fppi, sens, rates)
    # The step curve needs only the first point of each sensitivity and the last point.
    keep = np.r_[True, sens[1:] != sens[:-1]] if num_lesions else np.zeros(len(sens), bool)
    keep[-1] = True
    return {
        "sensitivity": values,
        "mean": float(np.mean(values)) if num_lesions else math.nan,
        "num_lesions": int(num_lesions),
        "fppi": fppi[keep].tolist(),
        "sens": sens[keep].tolist(),
    }


def plot_froc(froc, path, title="FROC"):
    """
    Draw every class's FROC curve (log false-positive axis) with the report rates to a PNG,
    written atomically (OutputError names it when it cannot be written).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    rates = froc["fp_rates"]
    for name, entry in froc["classes"].items():
        if entry["num_lesions"] == 0:
            continue
        fppi = np.asarray(entry["fppi"])
        sens = np.asarray(entry["sens"])
        # Extend the last operating point to the largest reported rate.
        x = np.r_[fppi, max(rates[-1], fppi[-1])]
        y = np.r_[sens, sens[-1]]
        style = dict(color="black", linewidth=2.0) if name == "overall" else dict(linewidth=1.0)
        ax.step(np.maximum(x, rates[0] / 2), y, where="post", label=name, **style)
    ax.set_xscale("log", base=2)
    ax.set_xlim(rates[0] / 2, rates[-1])
    ax.set_xticks(rates)
    ax.set_xticklabels([f"{r:g}" for r in rates])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{title} (IoU >= {froc['iou_thresh']:g})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    try:
        write_output(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
