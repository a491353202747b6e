"""YOLOv3: grid, decoding, target assignment (scale, anchor, cell) and losses, by hand."""

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_d2.errors import ConfigError
from cxr_d2.modeling.yolov3.targets import (
    assign_yolo_targets,
    build_yolo_targets,
    decode_yolo_boxes,
    wh_iou,
    yolo_grid,
)

from tests.helpers import base_config

COCO_ANCHORS = torch.tensor(
    [
        [[10, 13], [16, 30], [33, 23]],
        [[30, 61], [62, 45], [59, 119]],
        [[116, 90], [156, 198], [373, 326]],
    ],
    dtype=torch.float32,
)
GRID_608 = [(76, 76), (38, 38), (19, 19)]
STRIDES = [8, 16, 32]


def test_wh_iou_hand_worked():
    # 100x90 vs 116x90: 9000 / 10440; vs 156x198: 9000 / 30888
    iou = wh_iou(torch.tensor([[100.0, 90.0]]), torch.tensor([[116.0, 90.0], [156.0, 198.0]]))
    assert torch.allclose(iou, torch.tensor([[9000 / 10440, 9000 / 30888]]))


def test_assignment_picks_scale_anchor_and_cell():
    boxes = Boxes(
        torch.tensor(
            [[250.0, 155.0, 350.0, 245.0], [-1.0, -2.0, 11.0, 12.0], [300.0, 300.0, 340.0, 360.0]]
        )
    )
    index, level, anchor, collisions = assign_yolo_targets(boxes, GRID_608, STRIDES, COCO_ANCHORS)
    # box 0: 100x90 centred (300, 200) -> anchor (116, 90): level 2, anchor 0, cell (6, 9) of
    # 19x19; rows before level 2: 76*76*3 + 38*38*3 = 21660; (6*19 + 9)*3 + 0 = 369
    # box 1: 12x14 centred (5, 5) -> anchor (10, 13) (IoU 130/168): level 0, cell (0, 0)
    # box 2: 40x60 centred (320, 330) -> anchor (30, 61) (IoU 1800/2430): level 1, anchor 0,
    # cell (20, 20) of 38x38: 17328 + (20*38 + 20)*3 = 19668
    assert level.tolist() == [2, 0, 1] and anchor.tolist() == [0, 0, 0]
    assert index.tolist() == [22029, 0, 19668] and collisions == 0


def test_assignment_collision_is_counted_and_later_box_wins():
    boxes = Boxes(torch.tensor([[0.0, 0.0, 12.0, 14.0], [1.0, 0.0, 12.0, 13.0]]))
    grid = yolo_grid(GRID_608, STRIDES, COCO_ANCHORS)
    t = build_yolo_targets(
        boxes, torch.tensor([0, 1]), grid, GRID_608, STRIDES, COCO_ANCHORS, 2, (608, 608)
    )
    assert t["collisions"] == 1 and t["positive"].sum() == 1
    assert t["gt_index"][0] == 1 and t["class_target"][0].tolist() == [0.0, 1.0]


def test_targets_and_decoding_round_trip():
    boxes = Boxes(torch.tensor([[250.0, 155.0, 350.0, 245.0]]))
    grid = yolo_grid(GRID_608, STRIDES, COCO_ANCHORS)
    assert grid.shape == (22743, 5)
    assert grid[22029].tolist() == [9.0, 6.0, 116.0, 90.0, 32.0]
    t = build_yolo_targets(
        boxes, torch.tensor([2]), grid, GRID_608, STRIDES, COCO_ANCHORS, 4, (608, 608)
    )
    tt = t["box_target"][22029]
    # centre (300, 200) / 32 = (9.375, 6.25) -> offsets (0.375, 0.25); log(100/116), log(90/90)
    assert torch.allclose(tt, torch.tensor([0.375, 0.25, math.log(100 / 116), 0.0]))
    assert torch.isclose(t["box_weight"][22029], torch.tensor(2 - 9000 / 608**2))
    # decoding logits whose sigmoid is the offset gives the box back
    raw = torch.zeros(1, 22743, 9)
    raw[0, 22029, :2] = torch.logit(tt[:2])
    raw[0, 22029, 2:4] = tt[2:]
    assert torch.allclose(decode_yolo_boxes(raw, grid)[0, 22029], boxes.tensor[0], atol=1e-4)


def yolo_cfg(**over):
    return base_config("configs/Base-YOLOv3.yaml", **{"MODEL.YOLOV3.NUM_CLASSES": 4, **over})


def tiny_yolo_cfg(**over):
    base = {
        "MODEL.DARKNET.NUM_BLOCKS": [1, 1, 1, 1, 1],
        "MODEL.DARKNET.STEM_OUT_CHANNELS": 4,
        "MODEL.YOLOV3.NECK_CHANNELS": [32, 16, 8],
        "MODEL.YOLOV3.ANCHORS": [
            [[8, 8], [12, 16], [16, 12]],
            [[24, 24], [32, 20], [20, 32]],
            [[48, 48], [64, 40], [80, 80]],
        ],
    }
    base.update(over)
    return yolo_cfg(**base)


def test_darknet53_layout():
    model = build_model(
        yolo_cfg(**{"MODEL.DARKNET.STEM_OUT_CHANNELS": 2, "MODEL.YOLOV3.NECK_CHANNELS": [8, 4, 2]})
    )
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 52  # Darknet-53 = 52 convs + the classifier's fc
    shapes = model.backbone.output_shape()
    assert [(shapes[f].channels, shapes[f].stride) for f in ("dark3", "dark4", "dark5")] == [
        (16, 8),
        (32, 16),
        (64, 32),
    ]
    feats = model.backbone(torch.zeros(1, 3, 608, 608))
    assert [feats[f].shape[-1] for f in ("dark3", "dark4", "dark5")] == [76, 38, 19]
    outs = model.head([feats[f] for f in ("dark3", "dark4", "dark5")])
    assert [tuple(o.shape[1:]) for o in outs] == [
        (27, 76, 76),
        (27, 38, 38),
        (27, 19, 19),
    ]  # 3 * (5 + 4)


def _inputs(n=2, size=128, boxes=((20.0, 30.0, 60.0, 70.0),)):
    out = []
    for _ in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.arange(len(inst.gt_boxes), dtype=torch.int64) % 4
        out.append(
            {
                "image": torch.randint(0, 255, (3, size, size), dtype=torch.uint8).float(),
                "instances": inst,
            }
        )
    return out


@pytest.mark.parametrize("box_loss", ["yolo", "giou"])
def test_training_step_gradients(box_loss):
    torch.manual_seed(0)
    model = build_model(tiny_yolo_cfg(**{"MODEL.YOLOV3.BOX_LOSS": box_loss}))
    model.train()
    boxes = (
        (4.0, 4.0, 14.0, 14.0),
        (40.0, 40.0, 64.0, 64.0),
        (60.0, 60.0, 120.0, 120.0),
    )  # one per scale
    with EventStorage():
        losses = model(_inputs(boxes=boxes))
    assert set(losses) == {"loss_box_reg", "loss_obj", "loss_cls"}
    sum(losses.values()).backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not no_grad, no_grad


def test_no_ground_truth_only_objectness_loss():
    model = build_model(tiny_yolo_cfg())
    model.train()
    with EventStorage():
        losses = model(_inputs(boxes=()))
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_cls"].item() == 0.0
    assert torch.isfinite(losses["loss_obj"]) and losses["loss_obj"] > 0


def test_inference_boxes_in_original_image_coordinates():
    torch.manual_seed(0)
    model = build_model(tiny_yolo_cfg()).eval()
    model.score_thresh = 0.0
    x = _inputs(1)[0]
    with torch.no_grad():
        small = model([{"image": x["image"]}])[0]["instances"]
        big = model([{"image": x["image"], "height": 256, "width": 512}])[0]["instances"]
    assert len(small) > 0 and big.image_size == (256, 512)
    assert torch.allclose(
        big.pred_boxes.tensor,
        small.pred_boxes.tensor * torch.tensor([4.0, 2.0, 4.0, 2.0]),
        atol=1e-3,
    )
    assert small.pred_classes.max() < 4 and (small.scores <= 1).all()


def test_bad_box_loss_names_the_key():
    with pytest.raises(ConfigError, match="MODEL.YOLOV3.BOX_LOSS is 'iou'"):
        build_model(tiny_yolo_cfg(**{"MODEL.YOLOV3.BOX_LOSS": "iou"}))
