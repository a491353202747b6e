"""CXRVisualizer: each class in its colour, opaque box edges where the boxes are."""
import numpy as np
import pytest
import torch
from detectron2.data import Metadata
from detectron2.structures import Boxes, Instances

from cxr_d2.predict.overlay import CXRVisualizer, class_color

META = Metadata(thing_classes=["Cavitation", "Effusion"])


def _hits(drawn, color):
    """Pixels within 2 levels of `color` (RGB in [0, 1])."""
    return np.abs(drawn.astype(float) - np.array(color) * 255).max(axis=2) < 2


def _edges_hit(hit, x1, y1, x2, y2):
    """Fraction of rows of the lower halves of the left and right edges (the label covers the
    top-left corner), and of columns of the bottom edge, where the colour is within 2 px."""
    mid = (y1 + y2) // 2
    left = hit[mid:y2 - 1, x1 - 2:x1 + 3].any(axis=1).mean()
    right = hit[mid:y2 - 1, x2 - 2:x2 + 3].any(axis=1).mean()
    bottom = hit[y2 - 2:y2 + 3, x1 + 1:x2 - 1].any(axis=0).mean()
    return left, right, bottom


def test_predictions_drawn_at_the_boxes_in_class_colours():
    image = np.full((160, 200, 3), 90, np.uint8)
    r = Instances((160, 200))
    r.pred_boxes = Boxes(torch.tensor([[20.0, 30.0, 90.0, 120.0], [120.0, 40.0, 180.0, 90.0]]))
    r.scores = torch.tensor([0.9, 0.6])
    r.pred_classes = torch.tensor([1, 0])
    drawn = CXRVisualizer(image, META).draw_instance_predictions(r).get_image()
    assert drawn.shape == image.shape
    for (x1, y1, x2, y2), c in [((20, 30, 90, 120), 1), ((120, 40, 180, 90), 0)]:
        hit = _hits(drawn, class_color(META, c))
        assert min(_edges_hit(hit, x1, y1, x2, y2)) == 1.0
        assert not hit[y1 + 8:y2 - 8, x1 + 8:x2 - 8].any()  # the inside is left alone
    assert class_color(META, 0) != class_color(META, 1)


def test_ground_truth_and_thing_colors():
    meta = Metadata(thing_classes=["a", "b"], thing_colors=[(255, 0, 0), (0, 0, 255)])
    record = {"annotations": [{"bbox": [30, 40, 50, 60], "bbox_mode": 1, "category_id": 1}]}
    drawn = CXRVisualizer(np.zeros((128, 128, 3), np.uint8), meta).draw_dataset_dict(record)
    hit = _hits(drawn.get_image(), (0, 0, 1))
    assert min(_edges_hit(hit, 30, 40, 80, 100)) == 1.0
    assert class_color(meta, 0) == pytest.approx((1, 0, 0))
