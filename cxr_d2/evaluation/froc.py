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

`compute_froc` labels every detection at once (`froc_of`): the IoUs of all detection-lesion
pairs of the same image and class in one vectorised computation (boxes as pycocotools'
`bbIou`, bit for bit; masks one pycocotools call per image and class), then the greedy pass
only over detections that reach `iou_thresh`. `froc_labels` is the same criterion for one
image and class (tests/evaluation/test_froc.py checks one against a loop over the other).
"""

import math
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_util

from .detections import Detections, _id_column
from .output import write_output

__all__ = [
    "FP_RATES",
    "FrocGroundTruth",
    "froc_labels",
    "froc_curve",
    "sensitivity_at",
    "compute_froc",
    "froc_of",
    "plot_froc",
]


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


def _ann_rle(ann, height, width):
    """The RLE of a ground truth annotation (pycocotools' `COCO.annToRLE`)."""
    segm = ann["segmentation"]
    if isinstance(segm, list):
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    if isinstance(segm["counts"], list):
        return mask_util.frPyObjects(segm, height, width)
    return segm


@dataclass
class FrocGroundTruth:
    """
    The lesions of a dataset as columns, for `froc_of`.

    Attributes:
        image_ids (list): every image of the dataset, sorted (the FROC's images).
        category_ids (list): every category, sorted.
        names (list[str]): the categories' names, in `category_ids` order.
        image_id (np.ndarray): (G,) each annotation's image id.
        category_id (np.ndarray): (G,) each annotation's category id.
        crowd (np.ndarray): (G,) bool, `iscrowd`.
        bbox (np.ndarray): (G, 4) float64 XYWH_ABS (zeros where an annotation has none).
        masks (list[dict] or None): (G,) RLE of each annotation, for "segm".
    """

    image_ids: list
    category_ids: list
    names: list
    image_id: np.ndarray
    category_id: np.ndarray
    crowd: np.ndarray
    bbox: np.ndarray
    masks: list = None

    @classmethod
    def from_dataset(cls, dataset, iou_type="bbox"):
        """From a COCO-format dict (every image, category and annotation)."""
        anns = dataset.get("annotations", [])
        cats = sorted(dataset["categories"], key=lambda c: c["id"])
        masks = None
        if iou_type == "segm":
            sizes = {im["id"]: (im["height"], im["width"]) for im in dataset["images"]}
            masks = [_ann_rle(a, *sizes[a["image_id"]]) for a in anns]
        return cls(
            image_ids=sorted(im["id"] for im in dataset["images"]),
            category_ids=[c["id"] for c in cats],
            names=[c.get("name", str(c["id"])) for c in cats],
            image_id=_id_column([a["image_id"] for a in anns]),
            category_id=_id_column([a["category_id"] for a in anns]),
            crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            bbox=np.array([a.get("bbox", [0, 0, 0, 0]) for a in anns], np.float64).reshape(-1, 4),
            masks=masks,
        )

    def agnostic(self, category_id, name):
        """Every annotation in the one category `category_id` called `name`."""
        return FrocGroundTruth(
            self.image_ids,
            [category_id],
            [name],
            self.image_id,
            np.full(len(self.image_id), category_id, dtype=np.int64),
            self.crowd,
            self.bbox,
            self.masks,
        )

    def subset(self, image_ids):
        """The images `image_ids` (of this dataset) and their annotations only."""
        keep_images = set(image_ids)
        keep = np.flatnonzero([i in keep_images for i in self.image_id.tolist()])
        return FrocGroundTruth(
            sorted(i for i in self.image_ids if i in keep_images),
            self.category_ids,
            self.names,
            self.image_id[keep],
            self.category_id[keep],
            self.crowd[keep],
            self.bbox[keep],
            None if self.masks is None else [self.masks[k] for k in keep],
        )


def compute_froc(coco_gt, results, iou_type="bbox", iou_thresh=0.5, rates=FP_RATES):
    """
    FROC of COCO results against a COCO ground truth, per class and overall.

    Args:
        coco_gt: pycocotools COCO object (every image of the dataset, categories), or a
            FrocGroundTruth.
        results (list[dict] or Detections): COCO results with the ground truth's category ids.
        iou_type (str): "bbox" or "segm".

    Returns:
        dict: `fp_rates`, `iou_thresh`, `num_images`, and `classes`: {name or "overall":
        {"sensitivity": [per rate], "mean": float, "num_lesions": int, "fppi": [...],
        "sens": [...]}}; sensitivities are fractions, NaN where a class has no lesion;
        `fppi`/`sens` are the vertices of the step curve (the first operating point of each
        sensitivity, and the last one).
    """
    gt = coco_gt
    if not isinstance(gt, FrocGroundTruth):
        gt = FrocGroundTruth.from_dataset(coco_gt.dataset, iou_type)
    if not isinstance(results, Detections):
        results = Detections.from_results(results, masks=iou_type == "segm")
    return froc_of(gt, results, iou_type, iou_thresh, rates)


def froc_of(gt, dets, iou_type="bbox", iou_thresh=0.5, rates=FP_RATES):
    """
    `compute_froc` on columns: a FrocGroundTruth and Detections (with masks for "segm").
    Detections of images or categories the ground truth does not have are not counted.
    """
    labels, keep, num_lesions = _label_all(gt, dets, iou_type, iou_thresh)
    num_images = len(gt.image_ids)
    # One sort by score for every curve (froc_curve's own stable sort then finds them sorted).
    order = np.argsort(-dets.score, kind="stable")
    order = order[keep[order]]
    scores, labels = dets.score[order], labels[order]
    cats = _index(dets.category_id[order], gt.category_ids)
    classes = {}
    for k, name in enumerate(gt.names):
        sel = cats == k
        classes[name] = _entry(scores[sel], labels[sel], num_lesions[k], num_images, rates)
    total = int(num_lesions.sum())
    classes["overall"] = _entry(scores, labels, total, num_images, rates)
    return {
        "fp_rates": list(rates),
        "iou_thresh": iou_thresh,
        "iou_type": iou_type,
        "num_images": num_images,
        "classes": classes,
    }


def _index(values, known):
    """(N,) int64 position of each of `values` in the sorted list `known`, -1 if absent."""
    values, known = np.asarray(values), np.asarray(known)
    if values.dtype.kind in "iu" and known.dtype.kind in "iu" and len(known):
        pos = np.minimum(np.searchsorted(known, values), len(known) - 1)
        return np.where(known[pos] == values, pos, -1).astype(np.int64)
    where = {v: k for k, v in enumerate(known.tolist())}
    return np.array([where.get(v, -1) for v in values.tolist()], dtype=np.int64)


def _label_all(gt, dets, iou_type, iou_thresh):
    """
    Returns:
        labels (D,) int64: 1 hit, 0 false positive, -1 ignored (only a crowd region hit);
        keep (D,) bool: the detection is of one of the dataset's images and categories;
        num_lesions (K,) int64: non-crowd annotations per category.
    """
    num_cats = len(gt.category_ids)
    d_key = _keys(dets.image_id, dets.category_id, gt, num_cats)
    g_key = _keys(gt.image_id, gt.category_id, gt, num_cats)
    keep = d_key >= 0
    g_known = np.flatnonzero(g_key >= 0)
    lesion_cats = g_key[g_known[~gt.crowd[g_known]]] % max(num_cats, 1)
    num_lesions = np.bincount(lesion_cats, minlength=num_cats).astype(np.int64)
    labels = np.zeros(len(dets), dtype=np.int64)
    if not len(g_known) or not keep.any():
        return labels, keep, num_lesions
    # Detections by (image, category), then by score, highest first, stable; lesions by key.
    d_order = np.lexsort((-dets.score, d_key))
    d_order = d_order[keep[d_order]]
    g_order = g_known[np.argsort(g_key[g_known], kind="stable")]
    g_sorted = g_key[g_order]
    start = np.searchsorted(g_sorted, d_key[d_order], "left")
    count = np.searchsorted(g_sorted, d_key[d_order], "right") - start
    # Every detection-lesion pair of a key, detection-major: pair p = (pair_det, pair_gt).
    pair_det = np.repeat(np.arange(len(d_order)), count)
    first = np.repeat(np.cumsum(count) - count, count)
    pair_gt = g_order[np.repeat(start, count) + np.arange(len(pair_det)) - first]
    dets_of_pairs = d_order[pair_det]
    if iou_type == "bbox":
        ious = _box_ious(dets.bbox[dets_of_pairs], gt.bbox[pair_gt], gt.crowd[pair_gt])
    else:
        ious = _mask_ious(dets.segmentation, gt.masks, gt.crowd, dets_of_pairs, pair_gt, count)
    hit = np.flatnonzero(ious >= iou_thresh)
    labels[d_order] = _greedy(
        pair_det[hit].tolist(), pair_gt[hit].tolist(), ious[hit].tolist(), gt.crowd, len(d_order)
    )
    return labels, keep, num_lesions


def _keys(image_ids, category_ids, gt, num_cats):
    """(N,) int64 key image index * K + category index; -1 for an unknown image or category."""
    img = _index(image_ids, gt.image_ids)
    cat = _index(category_ids, gt.category_ids)
    return np.where((img >= 0) & (cat >= 0), img * num_cats + cat, -1)


def _box_ious(d, g, crowd):
    """
    IoU of each pair of XYWH boxes (P, 4), as pycocotools' `bbIou` computes it (same float64
    operations in the same order); crowd regions: intersection over the detection's area.
    """
    w = np.minimum(d[:, 2] + d[:, 0], g[:, 2] + g[:, 0]) - np.maximum(d[:, 0], g[:, 0])
    h = np.minimum(d[:, 3] + d[:, 1], g[:, 3] + g[:, 1]) - np.maximum(d[:, 1], g[:, 1])
    inter = w * h
    d_area = d[:, 2] * d[:, 3]
    union = np.where(crowd, d_area, d_area + g[:, 2] * g[:, 3] - inter)
    overlap = (w > 0) & (h > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _mask_ious(d_masks, g_masks, crowd, pair_d, pair_g, count):
    """Mask IoU of each pair: one pycocotools call per image and class (pairs are blocks)."""
    ious = np.empty(len(pair_d), dtype=np.float64)
    p = 0
    # A key's pairs are its detections x its lesions, detection-major: walk key by key.
    n = len(count)
    k = 0
    while k < n:
        num_g = int(count[k])
        if num_g == 0:
            k += 1
            continue
        g_idx = pair_g[p : p + num_g]
        num_d = 1
        while k + num_d < n and count[k + num_d] == num_g and pair_g[p + num_d * num_g] == g_idx[0]:
            num_d += 1
        d_idx = pair_d[p : p + num_d * num_g : num_g]
        block = mask_util.iou(
            [d_masks[i] for i in d_idx], [g_masks[j] for j in g_idx], crowd[g_idx].tolist()
        )
        ious[p : p + num_d * num_g] = np.asarray(block, dtype=np.float64).reshape(-1)
        p += num_d * num_g
        k += num_d
    return ious


def _greedy(pair_d, pair_g, pair_iou, crowd, num_dets):
    """
    The hit criterion over the pairs that reach the IoU threshold, in detection order: a
    detection takes the free non-crowd lesion it overlaps most (the first of equal ones).
    """
    labels = np.zeros(num_dets, dtype=np.int64)
    crowd = crowd.tolist()
    matched = set()
    i, n = 0, len(pair_d)
    while i < n:
        d, best, best_iou, crowd_hit = pair_d[i], -1, -1.0, False
        while i < n and pair_d[i] == d:
            g = pair_g[i]
            if crowd[g]:
                crowd_hit = True
            elif g not in matched and pair_iou[i] > best_iou:
                best, best_iou = g, pair_iou[i]
            i += 1
        if best >= 0:
            matched.add(best)
            labels[d] = 1
        elif crowd_hit:
            labels[d] = -1
    return labels


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

    Drawn on a bare Agg canvas with fixed margins (no pyplot, no tight_layout): the plot is
    the slowest part of an evaluation otherwise.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
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
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{title} (IoU >= {froc['iou_thresh']:g})")
    ax.grid(True, alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7, loc="lower right")
    write_output(path, lambda f: fig.savefig(f, format="png"))
