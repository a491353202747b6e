"""
The weighted pooling of cxr_d2.evaluation.bootstrap against pycocotools: every image weighted
once equals COCOeval's summary; a weight of 2 (or 0) equals the image duplicated with new ids
(or removed) and scored again by pycocotools.
"""

import copy

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from cxr_d2.evaluation.bootstrap import ImageMatches, percentile_interval, resample_weights
from cxr_d2.evaluation.cocoeval import make_coco, run_cocoeval, summarize

from tests.helpers import TINY

MAX_DETS = (1, 10, 100, 300)
METRICS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR@1",
    "AR@10",
    "AR@100",
    "AR",
    "ARs",
    "ARm",
    "ARl",
)


def _synthetic(num_images=12, seed=0, size=200):
    """Two categories, 0-4 lesions of all sizes per image; detections near them and elsewhere,
    every score distinct. Boxes XYWH; masks the boxes' RLE."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "width": size, "height": size, "file_name": f"{i}.png"})
        for _ in range(rng.integers(0, 5)):
            w, h = rng.uniform(4, 90, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            cat = int(rng.integers(1, 3))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            for _ in range(rng.integers(0, 3)):  # hits and near misses, sometimes wrong class
                jitter = rng.normal(0, 0.15 * min(w, h), 4)
                box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 2), max(h + jitter[3], 2)]
                label = cat if rng.uniform() < 0.8 else 3 - cat
                results.append({"image_id": i, "category_id": label, "bbox": box})
        for _ in range(rng.integers(0, 4)):  # false positives
            w, h = rng.uniform(4, 60, 2)
            box = [float(rng.uniform(0, size - w)), float(rng.uniform(0, size - h)), w, h]
            results.append({"image_id": i, "category_id": int(rng.integers(1, 3)), "bbox": box})
    scores = rng.permutation(len(results)) / len(results) + 0.001  # distinct
    for r, s in zip(results, scores):
        r["score"] = float(s)
        r["bbox"] = [float(v) for v in r["bbox"]]
    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    return gt, results


def _with_masks(gt, results):
    def rle(box, h, w):
        x, y, bw, bh = box
        m = np.zeros((h, w), np.uint8, order="F")
        m[int(y) : int(y + bh) + 1, int(x) : int(x + bw) + 1] = 1
        r = mask_util.encode(m)
        r["counts"] = r["counts"].decode()
        return r

    size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        a["segmentation"] = rle(a["bbox"], *size[a["image_id"]])
        a["area"] = float(mask_util.area(a["segmentation"]))
    results = [dict(r, segmentation=rle(r["bbox"], *size[r["image_id"]])) for r in results]
    return gt, results


def _reference(gt, results, iou_type):
    """pycocotools' summary (fractions, NaN where -1)."""
    coco_eval = run_cocoeval(make_coco(gt), results, iou_type, MAX_DETS, "pycocotools")
    return {k: (np.nan if v == -1 else v) for k, v in summarize(coco_eval).items()}


def _weighted(gt, results, iou_type, weights):
    matches = ImageMatches(make_coco(gt), results, iou_type, MAX_DETS)
    values = matches.metrics(np.asarray([weights], float), METRICS)
    return {k: float(v[0]) for k, v in values.items()}


def _assert_same(got, want):
    for k in METRICS:
        assert got[k] == pytest.approx(want[k], abs=1e-12, nan_ok=True), (k, got[k], want[k])


def _duplicated(gt, results, weights):
    """The set with image i present weights[i] times, each copy with new image/annotation ids."""
    ids = [im["id"] for im in sorted(gt["images"], key=lambda im: im["id"])]
    out = {"categories": gt["categories"], "images": [], "annotations": []}
    dets = []
    next_id = max(ids) + 1
    for image_id, w in zip(ids, weights):
        for copy_index in range(int(w)):
            new_id = image_id if copy_index == 0 else next_id
            next_id += copy_index > 0
            im = next(im for im in gt["images"] if im["id"] == image_id)
            out["images"].append(dict(im, id=new_id))
            for a in gt["annotations"]:
                if a["image_id"] == image_id:
                    out["annotations"].append(
                        dict(a, image_id=new_id, id=len(out["annotations"]) + 1)
                    )
            dets += [dict(r, image_id=new_id) for r in results if r["image_id"] == image_id]
    return out, dets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_every_image_once_equals_pycocotools(iou_type):
    gt, results = _synthetic()
    if iou_type == "segm":
        gt, results = _with_masks(gt, results)
    _assert_same(
        _weighted(gt, results, iou_type, np.ones(len(gt["images"]))),
        _reference(gt, results, iou_type),
    )


def test_duplicated_and_dropped_images_equal_pycocotools():
    gt, results = _synthetic(num_images=10, seed=1)
    weights = [2, 0, 1, 3, 1, 0, 1, 1, 0, 1]
    want = _reference(*_duplicated(gt, results, weights), "bbox")
    _assert_same(_weighted(gt, results, "bbox", weights), want)
    assert want["AP"] != pytest.approx(_reference(gt, results, "bbox")["AP"])  # it matters


def test_resamples_equal_pycocotools_on_each_resampled_set():
    gt, results = _synthetic(num_images=15, seed=2)
    matches = ImageMatches(make_coco(gt), results, "bbox", MAX_DETS)
    weights = resample_weights(matches.num_images, 4, np.random.default_rng(3))
    got = matches.metrics(weights, METRICS)
    for b, w in enumerate(weights):
        want = _reference(*_duplicated(gt, results, w), "bbox")
        _assert_same({k: got[k][b] for k in METRICS}, want)


def test_a_resample_without_ground_truth_is_nan():
    gt, results = _synthetic(num_images=6, seed=4)
    matches = ImageMatches(make_coco(gt), results, "bbox", MAX_DETS)
    without = [
        0 if any(a["image_id"] == im["id"] for a in gt["annotations"]) else 1
        for im in sorted(gt["images"], key=lambda im: im["id"])
    ]
    assert sum(without) and sum(without) < len(without)
    assert np.isnan(matches.metrics([without], ("AP",))["AP"][0])


def _phantom_predictions(coco, rng):
    """The phantom's lesions as detections: jittered, random scores, plus false positives."""
    results = []
    for a in coco["annotations"]:
        for _ in range(2):
            box = np.asarray(a["bbox"]) + rng.normal(0, 2.0, 4)
            results.append(
                {
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "bbox": box.tolist(),
                    "score": float(rng.uniform(0.05, 1)),
                }
            )
    for im in coco["images"]:
        results.append(
            {
                "image_id": im["id"],
                "category_id": coco["categories"][0]["id"],
                "bbox": [2.0, 2.0, 20.0, 20.0],
                "score": float(rng.uniform(0, 0.5)),
            }
        )
    return results


def test_tiny_phantom_once_equals_pycocotools(tiny_phantom):
    DatasetCatalog.get(f"{TINY}_test")
    coco = convert_to_coco_dict(f"{TINY}_test")
    assert coco["annotations"] and all(
        a["bbox_mode"] == BoxMode.XYWH_ABS for a in coco["annotations"] if "bbox_mode" in a
    )
    results = _phantom_predictions(coco, np.random.default_rng(5))
    want = _reference(coco, results, "bbox")
    _assert_same(_weighted(coco, results, "bbox", np.ones(len(coco["images"]))), want)
    assert 0 < want["AP"] < 1


def test_resample_weights_and_interval():
    w = resample_weights(7, 500, np.random.default_rng(0))
    assert w.shape == (500, 7) and (w.sum(axis=1) == 7).all() and w.min() == 0
    assert abs(w.mean() - 1) < 0.05  # each image drawn once per resample on average
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))  # linear
    assert percentile_interval([np.nan, 1.0, 3.0], level=0.5) == pytest.approx((1.5, 2.5))
    assert all(np.isnan(percentile_interval([np.nan])))
