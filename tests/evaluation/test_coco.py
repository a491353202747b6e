"""
CXRCOCOEvaluator: hand-worked answers (class-agnostic vs class-specific, AR@300 vs AR@100,
empty predictions, images without ground truth), pycocotools as the reference (every backend
against it: test_backends.py).
"""

import contextlib
import io
import json
import logging
import math

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import Trainer
from cxr_d2.evaluation import PredictionError, run_cocoeval, summarize
from cxr_d2.evaluation.cocoeval import make_coco

SIZE = 200


@contextlib.contextmanager
def registered(name, gt, classes=("a", "b")):
    """Register {image_id: [(xyxy box, class)]} as a Detectron2 dataset."""
    dicts = [
        {
            "file_name": f"img{i}.png",
            "image_id": i,
            "height": SIZE,
            "width": SIZE,
            "annotations": [
                {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0}
                for b, c in anns
            ],
        }
        for i, anns in gt.items()
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(classes), evaluator_type="coco")
    try:
        yield name
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _instances(preds):
    inst = Instances((SIZE, SIZE))
    inst.pred_boxes = Boxes(torch.tensor([p[0] for p in preds], dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([p[1] for p in preds], dtype=torch.float32)
    inst.pred_classes = torch.tensor([p[2] for p in preds], dtype=torch.int64)
    return inst


def evaluate(name, gt, preds, tmp_path, **opts):
    """Run Trainer.build_evaluator on {image_id: [(xyxy box, score, class)]}."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_list([str(x) for kv in opts.items() for x in kv])
    evaluator = Trainer.build_evaluator(cfg, name, str(tmp_path))
    evaluator.reset()
    for i in gt:
        out = {"instances": _instances(preds.get(i, []))}
        evaluator.process([{"image_id": i, "height": SIZE, "width": SIZE}], [out])
    return evaluator.evaluate()


def pycocotools_stats(gt, preds, max_dets=(1, 10, 100), agnostic=False):
    """The official COCOeval (Detectron2's COCOevalMaxDets for a limit other than 100)."""
    cat = (lambda c: 1) if agnostic else (lambda c: c + 1)
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "height": SIZE, "width": SIZE} for i in gt],
        "categories": [{"id": 1}] if agnostic else [{"id": 1}, {"id": 2}],
        "annotations": [
            {
                "id": k,
                "image_id": i,
                "category_id": cat(c),
                "iscrowd": 0,
                "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                "area": (b[2] - b[0]) * (b[3] - b[1]),
            }
            for k, (i, b, c) in enumerate(((i, b, c) for i in gt for b, c in gt[i]), start=1)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        dets = coco.loadRes(
            [
                {
                    "image_id": i,
                    "category_id": cat(c),
                    "score": s,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                }
                for i in preds
                for b, s, c in preds[i]
            ]
        )
        ev = (COCOeval if max_dets[-1] == 100 else COCOevalMaxDets)(coco, dets, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats * 100


# Per-class AP by hand. Image 1: an "a" lesion; the prediction covers it with IoU 0.8
# (1600 / 2000). Image 2: a "b" lesion; a confident false positive, then an exact hit.
PER_CLASS_GT = {1: [([10, 10, 50, 50], 0)], 2: [([20, 20, 60, 60], 1)]}
PER_CLASS_PRED = {
    1: [([10, 10, 50, 60], 0.9, 0)],
    2: [([70, 70, 90, 90], 0.9, 1), ([20, 20, 60, 60], 0.8, 1)],
}
# Class a is a hit at IoU thresholds .50 ... .80 (7 of 10): AP 70, AP50 100.
# Class b: recall 1 is reached at precision 1/2, so every threshold gives 50.
PER_CLASS_EXPECTED = {"AP": 60.0, "AP50": 75.0, "AP75": 75.0, "AP-a": 70.0, "AP-b": 50.0}


def test_per_class_ap_hand_worked_and_equal_to_pycocotools(tmp_path):
    with registered("cxr_test_per_class", PER_CLASS_GT) as name:
        res = evaluate(name, PER_CLASS_GT, PER_CLASS_PRED, tmp_path)["bbox"]
    for key, value in PER_CLASS_EXPECTED.items():
        assert res[key] == pytest.approx(value, abs=1e-6), key
    stats = pycocotools_stats(PER_CLASS_GT, PER_CLASS_PRED)
    np.testing.assert_allclose([res[k] for k in ("AP", "AP50", "AP75")], stats[:3], atol=1e-6)


# Class-agnostic differs from class-specific. Image 1: an "a" lesion, predicted as "b" (0.9)
# and as "a" (0.8); image 2: a "b" lesion found (0.7).
AGN_GT = {1: [([10, 10, 50, 50], 0)], 2: [([20, 20, 60, 60], 1)]}
AGN_PRED = {
    1: [([10, 10, 50, 50], 0.9, 1), ([10, 10, 50, 50], 0.8, 0)],
    2: [([20, 20, 60, 60], 0.7, 1)],
}
# Specific: a = 100; b: FP (0.9, image 1 has no b) then TP -> precision 1/2 at every recall: 50.
# Agnostic: TP, FP (duplicate), TP -> precision 1 up to recall 0.5 (51 of the 101 recall
# points), then 2/3 (50 points): (51 + 50 * 2/3) / 101.
AGN_EXPECTED = {"specific": 75.0, "a": 100.0, "b": 50.0, "agnostic": (51 + 50 * 2 / 3) / 101 * 100}


def test_agnostic_differs_from_specific(tmp_path):
    with registered("cxr_test_eval_agn", AGN_GT) as name:
        res = evaluate(name, AGN_GT, AGN_PRED, tmp_path)
    assert res["bbox"]["AP"] == pytest.approx(AGN_EXPECTED["specific"], abs=1e-6)
    assert res["bbox"]["AP-a"] == pytest.approx(AGN_EXPECTED["a"], abs=1e-6)
    assert res["bbox"]["AP-b"] == pytest.approx(AGN_EXPECTED["b"], abs=1e-6)
    assert res["bbox_agnostic"]["AP"] == pytest.approx(AGN_EXPECTED["agnostic"], abs=1e-6)
    assert res["bbox_agnostic"]["AP-lesion"] == pytest.approx(AGN_EXPECTED["agnostic"], abs=1e-6)
    # pycocotools, the reference, on the same inputs (AP at 100 = AP at 300 here).
    for agnostic, task in ((False, "bbox"), (True, "bbox_agnostic")):
        stats = pycocotools_stats(AGN_GT, AGN_PRED, agnostic=agnostic)
        got = [res[task][k] for k in ("AP", "AP50", "AP75", "AR@1", "AR@10", "AR@100")]
        np.testing.assert_allclose(got, stats[[0, 1, 2, 6, 7, 8]], atol=1e-6)


# AR@300 differs from AR@100: one lesion, 110 confident false positives, then the exact hit.
FAR = [
    (
        [150 + (k % 5) * 8, 150 + (k // 5 % 5) * 8, 158 + (k % 5) * 8, 158 + (k // 5 % 5) * 8],
        0.99 - k * 0.005,
        0,
    )
    for k in range(110)
]
MANY_GT = {1: [([10, 10, 60, 60], 0)]}
MANY_PRED = {1: FAR + [([10, 10, 60, 60], 0.01, 0)]}


def test_ar300_differs_from_ar100(tmp_path):
    with registered("cxr_test_eval_many", MANY_GT) as name:
        res = evaluate(name, MANY_GT, MANY_PRED, tmp_path, **{"CXR.EVAL.FROC.ENABLED": False})
    box = res["bbox"]
    # Hand-worked: the hit is the 111th detection: found with 300, not with 100.
    assert box["AR@100"] == pytest.approx(0.0, abs=1e-9)
    assert box["AR"] == pytest.approx(100.0, abs=1e-6)
    assert box["AR@300"] == box["AR"]
    # AP with 300 detections: precision 1/111 at recall 1, at every recall point.
    assert box["AP"] == pytest.approx(100 / 111, abs=1e-6)
    std = pycocotools_stats(MANY_GT, MANY_PRED, (1, 10, 100))
    at300 = pycocotools_stats(MANY_GT, MANY_PRED, (1, 10, 300))
    np.testing.assert_allclose([box["AR@1"], box["AR@10"], box["AR@100"]], std[6:9], atol=1e-6)
    np.testing.assert_allclose([box["AP"], box["AP50"], box["AR"]], at300[[0, 1, 8]], atol=1e-6)


def test_empty_predictions_score_zero_with_warning(tmp_path):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    d2_logger = logging.getLogger("detectron2.evaluation.coco_evaluation")
    d2_logger.addHandler(handler)
    try:
        with registered("cxr_test_eval_empty", AGN_GT) as name:
            res = evaluate(name, AGN_GT, {}, tmp_path)
    finally:
        d2_logger.removeHandler(handler)
    for task in ("bbox", "bbox_agnostic"):
        for key in (
            "AP",
            "AP50",
            "AP75",
            "AR@1",
            "AR@100",
            "AR",
            "AP-a" if task == "bbox" else "AP-lesion",
        ):
            assert res[task][key] == 0.0, (task, key)
    assert res["bbox_froc"]["FROC"] == 0.0
    assert any("predicted nothing" in r.getMessage() for r in records)
    metrics = json.loads((tmp_path / "evaluation.json").read_text())
    assert metrics["tasks"]["bbox"]["AP"] == 0.0 and metrics["num_predictions"] == 0


def test_image_without_ground_truth_counts_false_positives(tmp_path):
    gt = {1: [([10, 10, 50, 50], 0)], 2: []}
    preds = {1: [([10, 10, 50, 50], 0.8, 0)], 2: [([100, 100, 140, 140], 0.9, 0)]}
    with registered("cxr_test_eval_nogt", gt) as name:
        res = evaluate(name, gt, preds, tmp_path)
    # The FP on image 2 outranks the hit: precision 1/2 at recall 1 -> AP 50 (100 without it).
    assert res["bbox"]["AP-a"] == pytest.approx(50.0, abs=1e-6)
    assert math.isnan(res["bbox"]["AP-b"])  # no "b" lesion anywhere: undefined, not 0
    assert res["bbox"]["AP"] == pytest.approx(50.0, abs=1e-6)
    np.testing.assert_allclose(res["bbox"]["AP"], pycocotools_stats(gt, preds)[0], atol=1e-6)


def _random_set(seed, num_images=30, masks=False):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "height": 96, "width": 96} for i in range(1, num_images + 1)]
    anns, dets = [], []

    def shape():
        x, y = rng.uniform(0, 60, 2)
        w, h = rng.uniform(4, 36, 2)
        item = {
            "bbox": [float(x), float(y), float(w), float(h)],
            "category_id": int(rng.integers(0, 3)),
        }
        if masks:
            m = np.zeros((96, 96), dtype=np.uint8, order="F")
            m[int(y) : int(y + h), int(x) : int(x + w)] = 1
            m[int(y) : int(y + h / 2), int(x) : int(x + w / 3)] = 0  # not a box
            rle = mask_util.encode(m)
            rle["counts"] = rle["counts"].decode()
            item["segmentation"] = rle
            item["area"] = float(mask_util.area(rle))
        return item

    for im in images:
        for _ in range(rng.integers(0, 4)):
            a = shape()
            a.update(id=len(anns) + 1, image_id=im["id"], iscrowd=0)
            a.setdefault("area", a["bbox"][2] * a["bbox"][3])
            anns.append(a)
        # Jittered copies of the lesions (hits at various IoU), then clutter: up to ~130
        # detections per class on an image, so that AR@300 exceeds AR@100.
        for a in [a for a in anns if a["image_id"] == im["id"]]:
            for _ in range(3):
                d = dict(a, bbox=list(np.asarray(a["bbox"]) + rng.normal(0, 2, 4)))
                if not masks:
                    d.pop("segmentation", None)
                dets.append(_det(d, im["id"], rng, low=0.0))
        for _ in range(rng.integers(0, 400)):
            dets.append(_det(shape(), im["id"], rng, low=0.2))
    cats = [{"id": k, "name": n} for k, n in enumerate("abc")]
    return {"images": images, "categories": cats, "annotations": anns}, dets


def _det(item, image_id, rng, low=0.0):
    d = {k: v for k, v in item.items() if k in ("bbox", "category_id", "segmentation")}
    return dict(d, image_id=image_id, score=float(rng.uniform(low, 1.0)))


def test_summarize_equals_pycocotools_stats():
    """summarize() against pycocotools' own summary (standard limits); every backend equals
    pycocotools on every case in test_backends.py."""
    gt, dets = _random_set(1)
    s_ref = summarize(run_cocoeval(make_coco(gt), dets, "bbox", (1, 10, 100, 300)))
    assert 0 < s_ref["AR@100"] < s_ref["AR"]  # more than 100 detections on some images
    std = run_cocoeval(make_coco(gt), dets, "bbox", (1, 10, 100))
    with contextlib.redirect_stdout(io.StringIO()):
        std.summarize()
    np.testing.assert_allclose(
        [s_ref["AR@1"], s_ref["AR@10"], s_ref["AR@100"]], std.stats[6:9], atol=1e-12
    )
    s_std = summarize(std)
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@100")
    np.testing.assert_array_equal([s_std[k] for k in keys], std.stats[:9])
    np.testing.assert_array_equal([s_std[k] for k in ("ARs", "ARm", "ARl")], std.stats[9:])


def test_bad_class_and_nan_box_name_the_image(tmp_path):
    with registered("cxr_test_eval_bad", AGN_GT) as name:
        with pytest.raises(PredictionError, match=r"image_id 2\) has class index 5.*a, b"):
            evaluate(name, AGN_GT, {2: [([1, 1, 9, 9], 0.5, 5)]}, tmp_path)
        with pytest.raises(PredictionError, match=r"image_id 1\) has the box \[nan"):
            evaluate(name, AGN_GT, {1: [([float("nan"), 1, 9, 9], 0.5, 0)]}, tmp_path)


def test_evaluation_json_and_config_keys(tmp_path):
    with registered("cxr_test_eval_json", AGN_GT) as name:
        res = evaluate(name, AGN_GT, AGN_PRED, tmp_path, **{"CXR.EVAL.BACKEND": "pycocotools"})
    metrics = json.loads((tmp_path / "evaluation.json").read_text())
    assert metrics["backend"] == "pycocotools" and metrics["max_dets"] == [1, 10, 100, 300]
    assert metrics["model"] == "Faster R-CNN R-50"  # Detectron2's default config: C4, no FPN
    assert metrics["tasks"]["bbox_agnostic"]["AP"] == pytest.approx(res["bbox_agnostic"]["AP"])
    assert metrics["tasks"]["bbox"]["APs"] is None  # no small lesion: undefined, null in JSON
    assert "CXR:" in metrics["config"]
    assert metrics["split_manifest"] is None  # no Trainer: no run manifest to point at
    assert (tmp_path / "froc_bbox.png").stat().st_size > 0
    # The compact predictions file holds what coco_instances_results.json holds.
    from cxr_d2.evaluation.predictions_file import load_predictions

    saved = load_predictions(str(tmp_path / "instances_predictions.pth"))
    written = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert [r for p in saved for r in p["instances"]] == written and len(written) == 3


def test_predictions_file(tmp_path):
    from cxr_d2.evaluation.__main__ import main

    def write(results):
        path = tmp_path / "preds.json"
        path.write_text(json.dumps(results))
        return str(path)

    good = [
        {
            "image_id": i,
            "category_id": c,
            "score": s,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
        }
        for i in AGN_PRED
        for b, s, c in AGN_PRED[i]
    ]
    with registered("cxr_test_eval_file", AGN_GT) as name:
        assert main([write(good), "--dataset", name]) == 0
        metrics = json.loads((tmp_path / "evaluation.json").read_text())
        assert metrics["tasks"]["bbox"]["AP"] == pytest.approx(AGN_EXPECTED["specific"])
        assert metrics["tasks"]["bbox_agnostic"]["AP"] == pytest.approx(AGN_EXPECTED["agnostic"])
        bad_cat = [dict(good[0], category_id=7)]
        with pytest.raises(
            SystemExit,
            match=r"^error: predictions file .*preds.json: prediction 0 "
            r"\(image_id 1\) has category_id 7, which the dataset does not have "
            r"\(it has 2: a, b\)",
        ):
            main([write(bad_cat), "--dataset", name])
        with pytest.raises(SystemExit, match=r"prediction 0 is for image_id 99"):
            main([write([dict(good[0], image_id=99)]), "--dataset", name])
        with pytest.raises(SystemExit, match=r"must hold a JSON list"):
            main([write({"x": 1}), "--dataset", name])
    with pytest.raises(SystemExit, match=r"--dataset 'nope' is not a registered dataset"):
        main([write(good), "--dataset", "nope"])


def test_img_ids_subset(tmp_path):
    cfg = get_cfg()
    add_cxr_config(cfg)
    with registered("cxr_test_eval_subset", AGN_GT) as name:
        evaluator = Trainer.build_evaluator(cfg, name, str(tmp_path))
        evaluator.reset()
        for i in AGN_GT:
            out = {"instances": _instances(AGN_PRED[i])}
            evaluator.process([{"image_id": i, "height": SIZE, "width": SIZE}], [out])
        res = evaluator.evaluate(img_ids=[1])
    # Image 1 alone: the "a" lesion is found (100); no "b" lesion: b undefined, its FP unseen.
    assert res["bbox"]["AP"] == pytest.approx(100.0) and math.isnan(res["bbox"]["AP-b"])
    # Agnostic: TP then a duplicate FP: precision 1 at recall 1.
    assert res["bbox_agnostic"]["AP"] == pytest.approx(100.0)
    # FROC pools classes: the "b" false positive (0.9) outranks the hit: 1 FP per image first.
    assert res["bbox_froc"]["S@0.5"] == 0.0 and res["bbox_froc"]["S@1"] == pytest.approx(100.0)
