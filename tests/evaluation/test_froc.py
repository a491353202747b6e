"""FROC against a hand computation: hit criterion, duplicates, ties, images without lesions."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from cxr_d2.evaluation.froc import (
    FP_RATES,
    compute_froc,
    froc_curve,
    froc_labels,
    plot_froc,
    sensitivity_at,
)


def _coco(images, anns, cats=("a", "b")):
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "height": 100, "width": 100} for i in images],
        "categories": [{"id": k, "name": n} for k, n in enumerate(cats)],
        "annotations": [
            {"id": k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate(anns, start=1)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# Four images; lesions: a on images 1 and 2, b on image 3; image 4 has none. Boxes XYWH.
GT = [(1, 0, [0, 0, 10, 10]), (2, 0, [50, 50, 10, 10]), (3, 1, [20, 20, 10, 10])]
DETS = [
    (1, 0, [0, 0, 10, 10], 0.95),  # TP: lesion a on image 1
    (4, 0, [5, 5, 10, 10], 0.90),  # FP: image without lesions
    (1, 0, [0, 0, 10, 10], 0.85),  # FP: second hit on an already found lesion
    (3, 0, [20, 20, 10, 10], 0.80),  # FP: right place, wrong class
    (3, 1, [20, 20, 10, 10], 0.70),  # TP: lesion b
    (2, 0, [50, 50, 10, 10], 0.60),  # TP: lesion a on image 2
    (2, 1, [52, 52, 10, 10], 0.50),  # FP: no b lesion on image 2
    (1, 0, [2, 0, 10, 10], 0.30),  # FP: IoU 80/120 >= 0.5 but the lesion is taken
    (2, 0, [55, 50, 10, 10], 0.20),  # FP... IoU 50/150 = 1/3 < 0.5: a miss anyway
]
# Hand-worked, 4 images (FP per image = FP / 4):
# a (2 lesions): TP .95 | FP .9 .85 .8 | TP .6 | FP .3 .2 -> points (0, 1/2), (.75, 1/2),
#   (.75, 1), (1.25, 1): sensitivity 1/2 at 0.125, 0.25, 0.5; 1 from 1 FP per image.
# b (1 lesion): TP .7, FP .5: 1 everywhere.
# overall (3 lesions): TP .95 | FP .9 .85 .8 | TP .7 .6 | FP .5 .3 .2: 1/3 up to 0.5, then 1.
EXPECTED = {
    "a": [0.5, 0.5, 0.5, 1, 1, 1, 1],
    "b": [1, 1, 1, 1, 1, 1, 1],
    "overall": [1 / 3, 1 / 3, 1 / 3, 1, 1, 1, 1],
}


def _results():
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in DETS]


def test_froc_matches_hand_computation():
    froc = compute_froc(_coco([1, 2, 3, 4], GT), _results(), "bbox", iou_thresh=0.5)
    assert froc["fp_rates"] == list(FP_RATES) and froc["num_images"] == 4
    for name, expected in EXPECTED.items():
        entry = froc["classes"][name]
        np.testing.assert_allclose(entry["sensitivity"], expected, atol=1e-12, err_msg=name)
        assert entry["mean"] == pytest.approx(np.mean(expected))
    assert froc["classes"]["a"]["mean"] == pytest.approx(5.5 / 7)
    assert froc["classes"]["overall"]["num_lesions"] == 3
    # The stored step curve: the first point of each sensitivity, and the last point.
    np.testing.assert_allclose(froc["classes"]["a"]["fppi"], [0, 0, 0.75, 1.25])
    np.testing.assert_allclose(froc["classes"]["a"]["sens"], [0, 0.5, 1, 1])


def test_iou_threshold_is_the_hit_criterion():
    # IoU >= 0.3: the 0.2 detection (IoU 1/3 with lesion a of image 2) would hit, but that
    # lesion is already taken by the 0.6 one: nothing changes.
    froc = compute_froc(_coco([1, 2, 3, 4], GT), _results(), "bbox", iou_thresh=0.3)
    np.testing.assert_allclose(froc["classes"]["overall"]["sensitivity"], EXPECTED["overall"])
    # Without the 0.6 detection, the 0.2 one is the hit at IoU >= 0.3, not at >= 0.5.
    results = [r for r in _results() if r["score"] != 0.6]
    low = compute_froc(_coco([1, 2, 3, 4], GT), results, "bbox", iou_thresh=0.3)
    high = compute_froc(_coco([1, 2, 3, 4], GT), results, "bbox", iou_thresh=0.5)
    assert low["classes"]["a"]["sensitivity"][-1] == 1.0
    assert high["classes"]["a"]["sensitivity"][-1] == 0.5
    # IoU above 1: nothing is a hit.
    none = compute_froc(_coco([1, 2, 3, 4], GT), _results(), "bbox", iou_thresh=1.01)
    assert none["classes"]["overall"]["sensitivity"] == [0.0] * 7


def test_masks_of_rectangles_give_the_box_answer():
    coco = _coco([1, 2, 3, 4], GT)
    for ann in coco.dataset["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    results = []
    for r in _results():
        m = np.zeros((100, 100), dtype=np.uint8, order="F")
        x, y, w, h = r["bbox"]
        m[y : y + h, x : x + w] = 1
        results.append(dict(r, segmentation=mask_util.encode(m)))
    froc = compute_froc(coco, results, "segm")
    for name, expected in EXPECTED.items():
        np.testing.assert_allclose(froc["classes"][name]["sensitivity"], expected, err_msg=name)


def test_tied_scores_are_cut_together():
    fppi, sens, thr = froc_curve(
        np.array([0.9, 0.9]), np.array([1, 0]), num_lesions=1, num_images=4
    )
    np.testing.assert_allclose(fppi, [0, 0.25])
    np.testing.assert_allclose(sens, [0, 1])
    assert sensitivity_at(fppi, sens, (0.125, 0.25)) == [0.0, 1.0]


def test_class_without_lesions_is_nan_not_zero(tmp_path):
    froc = compute_froc(_coco([1, 2], GT[:1], cats=("a", "b")), _results()[:1], "bbox")
    assert np.isnan(froc["classes"]["b"]["mean"])
    assert froc["classes"]["overall"]["sensitivity"] == [1.0] * 7
    path = tmp_path / "froc.png"
    plot_froc(froc, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"


def _loop_froc(coco_gt, results, iou_type, iou_thresh=0.5, rates=FP_RATES):
    """The reference: the former compute_froc, one `froc_labels` call per image and class."""
    img_ids, cats = sorted(coco_gt.getImgIds()), sorted(coco_gt.getCatIds())
    by_key, gt_by_key = {}, {}
    for r in results:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r)
    for a in coco_gt.dataset.get("annotations", []):
        gt_by_key.setdefault((a["image_id"], a["category_id"]), []).append(a)
    pooled, sens = ([], [], 0), {}
    for cat in cats:
        scores, labels, lesions = [], [], 0
        for img in img_ids:
            gts, dets = gt_by_key.get((img, cat), []), by_key.get((img, cat), [])
            s, lab, n = froc_labels(gts, dets, iou_type, iou_thresh, coco_gt)
            scores.append(s)
            labels.append(lab)
            lesions += n
        s, lab = np.concatenate(scores), np.concatenate(labels)
        fppi, curve, _ = froc_curve(s, lab, lesions, len(img_ids))
        sens[coco_gt.cats[cat]["name"]] = sensitivity_at(fppi, curve, rates) if lesions else None
        pooled = (pooled[0] + [s], pooled[1] + [lab], pooled[2] + lesions)
    fppi, curve, _ = froc_curve(
        np.concatenate(pooled[0]), np.concatenate(pooled[1]), pooled[2], len(img_ids)
    )
    sens["overall"] = sensitivity_at(fppi, curve, rates)
    return sens, (fppi, curve)


def _random_froc_set(seed, masks, num_images=12):
    """0-3 lesions per image (boxes XYWH, masks: the box less a corner), 3 jittered copies of
    each (mostly hits, sometimes of another class), 0-10 clutter, on 96x96 images."""
    rng = np.random.default_rng(seed)
    anns, dets = [], []

    def item(box, cat, score=None):
        out = {"bbox": [float(v) for v in box], "category_id": cat}
        if masks:
            x, y, w, h = (int(round(v)) for v in box)
            m = np.zeros((96, 96), dtype=np.uint8, order="F")
            m[max(y, 0) : y + max(h, 1), max(x, 0) : x + max(w, 1)] = 1
            m[max(y, 0) : y + h // 3, max(x, 0) : x + w // 3] = 0
            rle = mask_util.encode(m)
            out["segmentation"] = dict(rle, counts=rle["counts"].decode())
        if score is not None:
            out["score"] = score
        return out

    for img in range(1, num_images + 1):
        for _ in range(rng.integers(0, 4)):
            box = [*rng.uniform(0, 60, 2), *rng.uniform(6, 36, 2)]
            cat = int(rng.integers(0, 3))
            a = item(box, cat)
            anns.append(dict(a, id=len(anns) + 1, image_id=img, iscrowd=0, area=box[2] * box[3]))
            for _ in range(3):
                c = cat if rng.uniform() < 0.8 else int(rng.integers(0, 3))
                jittered = np.asarray(box) + rng.normal(0, 3, 4)
                jittered[2:] = np.maximum(jittered[2:], 1)
                dets.append(dict(item(jittered, c, float(rng.uniform(0.3, 1))), image_id=img))
        for _ in range(rng.integers(0, 11)):
            box = [*rng.uniform(0, 60, 2), *rng.uniform(6, 36, 2)]
            score = float(np.round(rng.uniform(0, 0.8), 2))  # ties across images
            dets.append(dict(item(box, int(rng.integers(0, 3)), score), image_id=img))
    gt = {
        "images": [{"id": i, "height": 96, "width": 96} for i in range(1, num_images + 1)],
        "categories": [{"id": k, "name": n} for k, n in enumerate("abc")],
        "annotations": anns,
    }
    return gt, dets


@pytest.mark.parametrize(
    "iou_type,crowd,agnostic,iou_thresh",
    [
        ("bbox", False, False, 0.5),
        ("bbox", True, False, 0.5),
        ("bbox", True, True, 0.3),
        ("segm", True, False, 0.5),
        ("segm", False, True, 0.5),
    ],
)
def test_vectorised_froc_equals_the_loop(iou_type, crowd, agnostic, iou_thresh):
    """Random sets: lesions in 0-3 per image, jittered hits, clutter, crowd regions."""
    from cxr_d2.evaluation.cocoeval import agnostic_gt, agnostic_results, make_coco

    for seed in (11, 12):
        gt, dets = _random_froc_set(seed, masks=iou_type == "segm")
        if crowd:
            anns = gt["annotations"]
            gt["annotations"] = [dict(a, iscrowd=int(k % 3 == 0)) for k, a in enumerate(anns)]
        if agnostic:
            gt, dets = agnostic_gt(gt), agnostic_results(dets)
        # Detections of an image and of a category the dataset does not have: not counted.
        dets = dets + [dict(dets[0], image_id=999), dict(dets[1], category_id=77)]
        coco = make_coco(gt)
        froc = compute_froc(coco, dets, iou_type, iou_thresh)
        sens, (fppi, curve) = _loop_froc(coco, dets, iou_type, iou_thresh)
        for name, values in sens.items():
            got = froc["classes"][name]["sensitivity"]
            if values is None:
                assert all(np.isnan(got)), name
            else:
                assert got == values, (seed, name)
        overall = froc["classes"]["overall"]
        assert overall["fppi"][-1] == fppi[-1] and overall["sens"][-1] == curve[-1]
        assert 0 < overall["mean"] < 1


def test_mask_pairs_are_skipped_only_when_no_pixel_is_shared():
    """Detections one pixel into the lesion, or just beside it, on every side: with an IoU
    threshold of 0.001 a detection hits exactly when a per-pixel count finds a shared pixel
    (the bounding-box shortcut skips only pairs that share none)."""
    from cxr_d2.evaluation.detections import Detections
    from cxr_d2.evaluation.froc import FrocGroundTruth, _label_all

    lesion = np.zeros((40, 40), np.uint8)
    lesion[10:20, 12:20] = 1
    shifts = [(dy, dx) for d in (7, 8, 9, 10) for dy, dx in ((0, d), (0, -d), (d, 0), (-d, 0))]
    shifts += [(9, 7), (10, 8), (-9, -7), (-10, -8)]
    anns, results, expected = [], [], []
    for img, (dy, dx) in enumerate(shifts, start=1):
        det = np.roll(np.roll(lesion, dy, axis=0), dx, axis=1)
        rle = mask_util.encode(np.asfortranarray(lesion))
        rle["counts"] = rle["counts"].decode()
        anns.append({"id": img, "image_id": img, "category_id": 1, "bbox": [12, 10, 8, 10],
                     "area": 80, "iscrowd": 0, "segmentation": rle})  # fmt: skip
        d = mask_util.encode(np.asfortranarray(det))
        d["counts"] = d["counts"].decode()
        results.append({"image_id": img, "category_id": 1, "score": 0.9, "segmentation": d,
                        "bbox": [0.0, 0.0, 40.0, 40.0]})  # fmt: skip
        shared = int((det & lesion).sum())
        expected.append(1 if shared / (det | lesion).sum() >= 0.001 else 0)
    dataset = {"images": [{"id": i, "height": 40, "width": 40} for i in range(1, len(shifts) + 1)],
               "categories": [{"id": 1, "name": "a"}], "annotations": anns}  # fmt: skip
    gt = FrocGroundTruth.from_dataset(dataset, "segm")
    labels, _, _ = _label_all(gt, Detections.from_results(results, masks=True), "segm", 0.001)
    assert 0 < sum(expected) < len(expected)
    assert labels.tolist() == expected
