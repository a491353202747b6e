"""
Bootstrap intervals of COCO metrics over test images, without re-running COCOeval per resample.

pycocotools' `evaluate()` matches detections to ground truth image by image; `accumulate()`
then pools the images. A bootstrap resample is the test set with each image counted
`w_i` times (w_i >= 0, sum w = I), so the matching is done once (`ImageMatches`) and only the
pooling is redone, with weights: cumulative true/false positives become cumulative *weighted*
counts, the number of ground truths a weighted sum. With every weight 1 this is pycocotools'
`accumulate()` operation for operation (same sort, same divisions), so AP, AP50, AR equal
`summarize()` exactly; a weight of 2 equals scoring the image twice (a copy with new ids),
except where two detections of one category tie in score (the copies of a tie are ordered
differently; see tests/evaluation/test_bootstrap.py).

Shapes: W is (B, I) multiplicities, one row per resample, columns in `ImageMatches.image_ids`
order (COCO's sorted image ids). Metrics are fractions in [0, 1], NaN where undefined (no
ground truth of any category in the resample), as `summarize()` gives -1.
"""

import numpy as np

from .cocoeval import DEFAULT_MAX_DETS, run_cocoeval

__all__ = [
    "BOOTSTRAP_METRICS",
    "ImageMatches",
    "resample_weights",
    "percentile_interval",
]

# metric -> (area range index, "top" detection limit or a number, IoU threshold or None, kind)
_AREAS = {"": 0, "s": 1, "m": 2, "l": 3}
# Resamples pooled at once: (B, N) arrays of a few MB.
_BLOCK = 100
BOOTSTRAP_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR", "ARs", "ARm", "ARl")


def _metric_spec(name, max_dets):
    """(area index, detection-limit index, IoU threshold or None, "precision"/"recall")."""
    top = len(max_dets) - 1
    if name.startswith("AR@"):
        return 0, list(max_dets).index(int(name[3:])), None, "recall"
    if name in ("AP50", "AP75"):
        return 0, top, int(name[2:]) / 100, "precision"
    if name[:2] in ("AP", "AR") and name[2:] in _AREAS:
        kind = "precision" if name[:2] == "AP" else "recall"
        return _AREAS[name[2:]], top, None, kind
    raise ValueError(f"metric '{name}' is not one of {', '.join(BOOTSTRAP_METRICS)}, AR@<limit>")


class _Pool:
    """
    The detections of one (category, area range, detection limit) in accumulate()'s order.

    Attributes:
        image (N,) int: column of W of each detection.
        tp, counted (T, N) bool: a true positive / not ignored, at each IoU threshold.
        gt (I,) float: ground truths not ignored, per image.
    """

    def __init__(self, image, tp, counted, gt):
        self.image, self.tp, self.counted, self.gt = image, tp, counted, gt
        self.same_counted = bool((counted == counted[:1]).all()) if counted.size else True

    def curves(self, weights, rec_thrs):
        """
        Interpolated precision (B, T, R) and recall (B, T) of the weighted pool, and the
        weighted ground-truth count (B,).

        accumulate() looks precision up at the first detection whose recall reaches each
        threshold, a true positive (recall only grows there), and takes the envelope (the
        maximum to its right), also reached at a true positive: so only the true positives'
        cumulative counts are formed. Weighted counts of whole images are exact integers.
        """
        npig = weights @ self.gt  # (B,)
        b, t_num = weights.shape[0], self.tp.shape[0]
        precision = np.zeros((b, t_num, len(rec_thrs)))
        recall = np.zeros((b, t_num))
        if self.image.size == 0:
            return precision, recall, npig
        w = weights[:, self.image]  # (B, N)
        safe = np.where(npig > 0, npig, 1.0)[:, None]
        counted = None
        for t in range(t_num):
            pos = np.flatnonzero(self.tp[t])
            if not pos.size:
                continue
            if counted is None or not self.same_counted:
                counted = np.cumsum(w * self.counted[t], axis=1)  # (B, N) true + false positives
            tp = np.cumsum(w[:, pos], axis=1)  # (B, P) at each true positive
            fp = counted[:, pos] - tp
            rc = tp / safe
            pr = tp / (fp + tp + np.spacing(1))
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the envelope
            recall[:, t] = rc[:, -1]
            for i in range(b):
                inds = np.searchsorted(rc[i], rec_thrs, side="left")
                ok = inds < pos.size
                precision[i, t, ok] = pr[i, inds[ok]]
        return precision, recall, npig


class ImageMatches:
    """
    pycocotools' per-image matching of one task, done once; `metrics(W)` pools it for any
    image weights.

    Args:
        coco_gt: a pycocotools COCO of the ground truth (`make_coco(..., "pycocotools")`).
        results (list[dict]): COCO results on it (category ids of the ground truth).
        iou_type (str): "bbox" or "segm".
        max_dets (tuple[int]): detection limits, ascending (the evaluator's, e.g. 1, 10, 100, 300).
    """

    def __init__(self, coco_gt, results, iou_type, max_dets=DEFAULT_MAX_DETS):
        coco_eval = run_cocoeval(coco_gt, results, iou_type, max_dets, backend="pycocotools")
        p = coco_eval.params
        self.coco_eval = coco_eval
        self.image_ids = list(p.imgIds)
        self.max_dets = list(p.maxDets)
        self._rec_thrs = p.recThrs
        self._iou_thrs = p.iouThrs
        self._eval_imgs = coco_eval.evalImgs
        self._num = (len(p.catIds), len(p.areaRng), len(p.imgIds))
        self._pools = {}

    @property
    def num_images(self):
        return len(self.image_ids)

    def _pool(self, k, a, m):
        key = (k, a, m)
        if key not in self._pools:
            _, num_areas, num_images = self._num
            max_det = self.max_dets[m]
            scores, image, tp, counted, gt = [], [], [], [], np.zeros(num_images)
            for i in range(num_images):
                e = self._eval_imgs[(k * num_areas + a) * num_images + i]
                if e is None:
                    continue
                s = e["dtScores"][:max_det]
                matched = e["dtMatches"][:, :max_det] != 0  # a gt id, 0 where unmatched
                ignored = e["dtIgnore"][:, :max_det].astype(bool)
                scores.append(np.asarray(s, dtype=float))
                image.append(np.full(len(s), i))
                tp.append(matched & ~ignored)
                counted.append(~ignored)
                gt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            t = len(self._iou_thrs)
            if scores:
                order = np.argsort(-np.concatenate(scores), kind="mergesort")
                image = np.concatenate(image)[order]
                tp = np.concatenate(tp, axis=1)[:, order]
                counted = np.concatenate(counted, axis=1)[:, order]
            else:
                image, tp, counted = (
                    np.zeros(0, int),
                    np.zeros((t, 0), bool),
                    np.zeros((t, 0), bool),
                )
            self._pools[key] = _Pool(image, tp, counted, gt)
        return self._pools[key]

    def metrics(self, weights, names=("AP", "AP50", "AR")):
        """
        The COCO metrics of each weighted image set.

        Args:
            weights: (B, I) non-negative image multiplicities (a 1-D array is one set).
            names: metric names of `summarize()` (AP, AP50, AP75, APs/m/l, AR, ARs/m/l, AR@m).

        Returns:
            dict[str, ndarray (B,)]: fractions; NaN where no category has ground truth.
        """
        weights = np.atleast_2d(np.asarray(weights, dtype=float))
        if weights.shape[1] != self.num_images:
            raise ValueError(f"weights have {weights.shape[1]} columns, not {self.num_images}")
        specs = {name: _metric_spec(name, self.max_dets) for name in names}
        blocks = [
            self._metrics(weights[i : i + _BLOCK], specs) for i in range(0, len(weights), _BLOCK)
        ]
        return {name: np.concatenate([b[name] for b in blocks]) for name in names}

    def _metrics(self, weights, specs):
        out = {}
        for (a, m), group in _by_pool(specs).items():
            sums = {name: np.zeros(len(weights)) for name in group}
            counts = {name: np.zeros(len(weights)) for name in group}
            for k in range(self._num[0]):
                precision, recall, npig = self._pool(k, a, m).curves(weights, self._rec_thrs)
                valid = npig > 0
                for name in group:
                    _, _, iou, kind = specs[name]
                    t = slice(None) if iou is None else [_iou_index(self._iou_thrs, iou)]
                    values = precision[:, t] if kind == "precision" else recall[:, t]
                    per_set = values.reshape(len(weights), -1)
                    sums[name] += np.where(valid, per_set.sum(axis=1), 0.0)
                    counts[name] += np.where(valid, per_set.shape[1], 0)
            for name in group:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[name] = np.where(counts[name] > 0, sums[name] / counts[name], np.nan)
        return out


def _by_pool(specs):
    groups = {}
    for name, (a, m, _, _) in specs.items():
        groups.setdefault((a, m), []).append(name)
    return groups


def _iou_index(iou_thrs, iou):
    return int(np.argmin(np.abs(iou_thrs - iou)))


def resample_weights(num_images, num_resamples, rng):
    """
    (B, I) image multiplicities of `num_resamples` bootstrap resamples: I images drawn with
    replacement from I, each row summing to I. `rng`: a numpy Generator.
    """
    draws = rng.integers(0, num_images, size=(num_resamples, num_images))
    flat = draws + num_images * np.arange(num_resamples)[:, None]
    counts = np.bincount(flat.ravel(), minlength=num_resamples * num_images)
    return counts.reshape(num_resamples, num_images).astype(float)


def percentile_interval(values, level=0.95):
    """The (lo, hi) percentile interval of bootstrap values (NaN ones dropped; NaNs if none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)
