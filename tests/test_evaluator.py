"""The Trainer's COCO evaluator against pycocotools and against hand-worked answers."""
import contextlib
import io

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import Trainer

# Image 1: one "a" lesion; the prediction covers it with IoU 0.8 (1600 / 2000).
# Image 2: one "b" lesion; a confident false positive, then an exact hit.
GT = {1: [([10, 10, 50, 50], 0)], 2: [([20, 20, 60, 60], 1)]}
PRED = {1: [([10, 10, 50, 60], 0.9, 0)], 2: [([70, 70, 90, 90], 0.9, 1), ([20, 20, 60, 60], 0.8, 1)]}
# Hand-worked: class a is a hit at IoU thresholds .50 ... .80 (7 of 10): AP 70, AP50 100.
# Class b: recall 1 is reached at precision 1/2, so every threshold gives 50.
EXPECTED = {"AP": 60.0, "AP50": 75.0, "AP75": 75.0, "AP-a": 70.0, "AP-b": 50.0}


@pytest.fixture(scope="module")
def hand_dataset():
    name = "cxr_test_hand_made"
    dicts = [
        {
            "file_name": f"img{i}.png", "image_id": i, "height": 100, "width": 100,
            "annotations": [
                {"bbox": b, "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0}
                for b, c in GT[i]
            ],
        }
        for i in GT
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="coco")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _outputs(image_id):
    inst = Instances((100, 100))
    preds = PRED[image_id]
    inst.pred_boxes = Boxes(torch.tensor([p[0] for p in preds], dtype=torch.float32))
    inst.scores = torch.tensor([p[1] for p in preds])
    inst.pred_classes = torch.tensor([p[2] for p in preds])
    return {"instances": inst}


def _evaluate(name, tmp_path):
    cfg = get_cfg()
    add_cxr_config(cfg)
    evaluator = Trainer.build_evaluator(cfg, name, str(tmp_path))
    evaluator.reset()
    for i in GT:
        evaluator.process([{"image_id": i, "height": 100, "width": 100}], [_outputs(i)])
    return evaluator.evaluate()["bbox"]


def _pycocotools_ap():
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "height": 100, "width": 100} for i in GT],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": k, "image_id": i, "category_id": c + 1, "iscrowd": 0,
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])}
            for k, (i, (b, c)) in enumerate(((i, g) for i in GT for g in GT[i]), start=1)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = gt.loadRes(
            [
                {"image_id": i, "category_id": c + 1, "score": s,
                 "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                for i in PRED for b, s, c in PRED[i]
            ]
        )
        ev = COCOeval(gt, dets, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_box_ap_hand_worked(hand_dataset, tmp_path):
    res = _evaluate(hand_dataset, tmp_path)
    for key, value in EXPECTED.items():
        assert res[key] == pytest.approx(value, abs=1e-6), key


def test_box_ap_equals_pycocotools(hand_dataset, tmp_path):
    res = _evaluate(hand_dataset, tmp_path)
    stats = _pycocotools_ap()
    got = [res[k] for k in ("AP", "AP50", "AP75")]
    np.testing.assert_allclose(got, stats[:3] * 100, atol=1e-6)
