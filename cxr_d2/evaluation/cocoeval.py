"""
COCO evaluation through a chosen backend, and the summary with AR at 300 detections.

Three backends compute the same numbers (tests/evaluation/test_backends.py compares each to
pycocotools on every stat, exactly): `pycocotools` (the reference, pure Python matching),
`faster_coco_eval` (PyPI `faster-coco-eval`, C++ matching and accumulation) and `hotcoco`
(PyPI `hotcoco`, Rust loading, matching and accumulation; the fastest, measured by
tools/benchmark_eval.py, so "auto" picks it). None uses `detectron2._C`.

hotcoco takes the results as (N, 7) rows [image_id, x, y, w, h, score, category_id]
(`Detections.as_rows`), with no Python dict per detection; it needs non-negative integer
image, category and annotation ids, so a dataset with other ids is scored with the next
backend (a log line says so).

Category ids here are those of the COCO ground truth (Detectron2's `convert_to_coco_json`
keeps the contiguous ids 0..K-1 for datasets without `thing_dataset_id_to_contiguous_id`).
Boxes are COCO XYWH_ABS; masks are COCO RLE.
"""

import contextlib
import io
import logging

import numpy as np

from .detections import Detections

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_DETS",
    "AGNOSTIC_CATEGORY_ID",
    "resolve_backend",
    "backend_for",
    "make_coco",
    "run_cocoeval",
    "summarize",
    "agnostic_gt",
    "agnostic_results",
]

logger = logging.getLogger(__name__)

BACKENDS = ("pycocotools", "faster_coco_eval", "hotcoco")
# Detections per image (per class, as COCOeval applies the limit per image and category):
# AR@1, AR@10, AR@100 as COCO, and the last one (300, the paper's AR) for AP and `AR`.
DEFAULT_MAX_DETS = (1, 10, 100, 300)
# The one category every ground truth and prediction is mapped to for class-agnostic scores.
AGNOSTIC_CATEGORY_ID = 1


def _installed(backend):
    try:
        __import__({"faster_coco_eval": "faster_coco_eval", "hotcoco": "hotcoco"}[backend])
    except ImportError:
        return False
    return True


def resolve_backend(name):
    """
    Return the backend to use: "pycocotools", "faster_coco_eval", "hotcoco", or "auto" (the
    fastest installed: hotcoco, then faster_coco_eval, then pycocotools, with a log line
    when it is not hotcoco).
    """
    if name not in BACKENDS + ("auto",):
        raise ValueError(f"COCO backend '{name}' is not one of {', '.join(BACKENDS)}, auto")
    if name != "auto":
        return name
    for backend in ("hotcoco", "faster_coco_eval"):
        if _installed(backend):
            if backend != "hotcoco":
                logger.warning(f"hotcoco is not installed: evaluating with {backend} (slower)")
            return backend
    logger.warning("hotcoco and faster-coco-eval are not installed: evaluating with pycocotools")
    return "pycocotools"


def _non_negative_ints(values):
    return all(type(v) is int and v >= 0 for v in values)


def backend_for(dataset, backend):
    """
    `backend`, or, for "hotcoco" on a COCO dict whose image, category or annotation ids are
    not all non-negative integers (which hotcoco refuses), the next fastest one.
    """
    if backend != "hotcoco":
        return backend
    ids_ok = (
        _non_negative_ints(im["id"] for im in dataset["images"])
        and _non_negative_ints(c["id"] for c in dataset["categories"])
        and _non_negative_ints(a["id"] for a in dataset.get("annotations", []))
    )
    if ids_ok:
        return backend
    fallback = "faster_coco_eval" if _installed("faster_coco_eval") else "pycocotools"
    logger.warning(f"ids that are not non-negative integers: evaluating with {fallback}")
    return fallback


def _api(backend):
    if backend == "hotcoco":
        import hotcoco

        return hotcoco.COCO, hotcoco.COCOeval
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        def make_eval(gt, dt, iou_type):
            return COCOeval_faster(gt, dt, iou_type, print_function=lambda *a, **k: None)

        return COCO, make_eval
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def make_coco(dataset, backend="pycocotools"):
    """
    Build the backend's COCO object from a COCO-format dict. Its annotations are copied (one
    level: the Python backends set fields of the annotations they evaluate, never inside
    them; hotcoco copies everything into its own store).
    """
    coco_cls, _ = _api(backend)
    if backend == "hotcoco":
        return coco_cls(dataset)
    coco = coco_cls()
    coco.dataset = dict(dataset, annotations=[dict(a) for a in dataset.get("annotations", [])])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _hotcoco_results(coco_gt, dets, iou_type):
    """hotcoco's results COCO from columns: one load of (N, 7) rows, masks alongside."""
    if iou_type != "segm":
        return coco_gt.load_res(dets.as_rows())
    coco_dt = coco_gt.load_res(dets.as_rows(), segmentation=dets.segmentation)
    if len(dets):
        # As pycocotools without a result box (Detectron2 drops it for segm): the mask area
        # sets the size range; hotcoco's rows give the box area.
        from hotcoco import mask as hc_mask

        area = np.asarray(hc_mask.area(dets.segmentation), dtype=np.float64)
        coco_dt.update_anns(ids=np.arange(1, len(dets) + 1), area=area)
    return coco_dt


def _results_coco(coco_gt, results, iou_type, backend):
    """The detections as a COCO object; `loadRes` cannot take an empty list, this can."""
    if backend == "hotcoco":
        if isinstance(results, list) and results:
            if iou_type == "bbox" or not any("bbox" in r for r in results):
                return coco_gt.loadRes(results)  # hotcoco reads the dicts, never writes them
        if not isinstance(results, Detections):
            results = Detections.from_results(results, masks=iou_type == "segm")
        return _hotcoco_results(coco_gt, results, iou_type)
    if isinstance(results, Detections):
        results = results.to_results()
    # One-level copies: loadRes and COCOeval set fields of each result, never inside them.
    results = [dict(r) for r in results]
    if iou_type == "segm":
        # As Detectron2: without the box, COCO takes the mask area for the size ranges.
        for r in results:
            r.pop("bbox", None)
    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return coco_gt.loadRes(results)
    empty = {k: coco_gt.dataset[k] for k in ("images", "categories")}
    return make_coco(dict(empty, annotations=[]), backend)


def run_cocoeval(coco_gt, results, iou_type, max_dets=DEFAULT_MAX_DETS, backend="pycocotools"):
    """
    Run COCOeval's evaluate() and accumulate() on every image of `coco_gt`.

    Args:
        coco_gt: a COCO object of `backend` (see `make_coco`).
        results (list[dict] or Detections): COCO results (`image_id`, `category_id`, `score`,
            `bbox` XYWH_ABS and, for "segm", `segmentation` RLE); may be empty.
        iou_type (str): "bbox" or "segm".
        max_dets (tuple[int]): detections per image and category, ascending; at least 3.

    Returns:
        the COCOeval object; `eval["precision"]` is (T=10, R=101, K, A=4, M=len(max_dets)),
        `eval["recall"]` is (T, K, A, M); -1 where a category or area range has no ground truth.
    """
    max_dets = sorted(int(m) for m in max_dets)
    assert len(max_dets) >= 3, "COCOeval needs at least three detection limits"
    _, make_eval = _api(backend)
    coco_dt = _results_coco(coco_gt, results, iou_type, backend)
    coco_eval = make_eval(coco_gt, coco_dt, iou_type)
    coco_eval.params.maxDets = max_dets
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval


def _mean_valid(values):
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(coco_eval):
    """
    The COCO summary with the detection limits of `coco_eval.params.maxDets`.

    AP metrics use the largest limit (300 by default, as Detectron2's `max_dets_per_image`);
    `AR@<m>` is the recall with m detections for every limit and `AR` the one with the largest.
    Values are fractions in [0, 1], -1 where no ground truth makes them undefined.

    Returns:
        dict[str, float]: AP, AP50, AP75, APs, APm, APl, AR@1, AR@10, AR@100, ..., AR, ARs,
        ARm, ARl.
    """
    p = coco_eval.params
    precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
    recall = coco_eval.eval["recall"]  # (T, K, A, M)
    iou_thrs = np.asarray(p.iouThrs)
    iou50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    iou75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
    top = len(p.maxDets) - 1
    out = {
        "AP": _mean_valid(precision[:, :, :, 0, top]),
        "AP50": _mean_valid(precision[iou50, :, :, 0, top]),
        "AP75": _mean_valid(precision[iou75, :, :, 0, top]),
    }
    for a, suffix in ((1, "s"), (2, "m"), (3, "l")):
        out["AP" + suffix] = _mean_valid(precision[:, :, :, a, top])
    for m, limit in enumerate(p.maxDets):
        out[f"AR@{limit}"] = _mean_valid(recall[:, :, 0, m])
    out["AR"] = out[f"AR@{p.maxDets[top]}"]
    for a, suffix in ((1, "s"), (2, "m"), (3, "l")):
        out["AR" + suffix] = _mean_valid(recall[:, :, a, top])
    return out


def agnostic_gt(dataset, name="lesion"):
    """A COCO-format dict with every annotation moved to the one category `name`."""
    out = {k: v for k, v in dataset.items() if k not in ("annotations", "categories")}
    out["categories"] = [{"id": AGNOSTIC_CATEGORY_ID, "name": name}]
    out["annotations"] = [
        dict(a, category_id=AGNOSTIC_CATEGORY_ID) for a in dataset.get("annotations", [])
    ]
    return out


def agnostic_results(results):
    """The COCO results (list or Detections) with every prediction in the agnostic category."""
    if isinstance(results, Detections):
        return results.with_category(AGNOSTIC_CATEGORY_ID)
    return [dict(r, category_id=AGNOSTIC_CATEGORY_ID) for r in results]
