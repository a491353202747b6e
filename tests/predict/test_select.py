"""select_instances and parse_classes: --score-thresh, --classes, --max-dets."""
import pytest
import torch
from detectron2.structures import Boxes, Instances

from cxr_d2.errors import ConfigError
from cxr_d2.predict.select import parse_classes, select_instances

NAMES = ["Airspace Consolidation", "Cavitation", "Pleural Effusion"]


def _instances():
    r = Instances((50, 50))
    r.pred_boxes = Boxes(torch.arange(20, dtype=torch.float32).reshape(5, 4))
    r.scores = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.05])
    r.pred_classes = torch.tensor([0, 1, 2, 1, 0])
    return r


def test_threshold_classes_max_dets_in_score_order():
    kept = select_instances(_instances(), score_thresh=0.2)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7, 0.5, 0.2])
    assert kept.pred_boxes.tensor[0].tolist() == [4, 5, 6, 7]  # the boxes follow their scores
    kept = select_instances(_instances(), classes=[0, 2], max_dets=2)
    assert kept.pred_classes.tolist() == [2, 0] and kept.scores.tolist() == pytest.approx([0.5, 0.2])
    assert len(select_instances(_instances(), score_thresh=0.95)) == 0


def test_parse_classes():
    assert parse_classes("", NAMES) is None
    assert parse_classes("pleural effusion, 1,Cavitation", NAMES) == [1, 2]
    with pytest.raises(ConfigError, match="'3' is not a class of the model"):
        parse_classes("3", NAMES)
    with pytest.raises(ConfigError, match="'Nodule' is not a class"):
        parse_classes("Nodule", NAMES)
