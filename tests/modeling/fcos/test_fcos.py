"""FCOS built from a yacs config: Detectron2's FCOS with AdelaiDet's MODEL.FCOS keys."""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.fcos import FCOS as D2FCOS
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import Trainer, check_config
from cxr_d2.errors import ConfigError

from tests.helpers import TINY

CONFIG = os.path.join("configs", "Phantom", "fcos_R_18_FPN_cpu.yaml")


def _cfg(*opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.FCOS.NUM_CLASSES", "4", *opts])
    return cfg


def _instances(boxes, classes, size=128):
    return Instances(
        (size, size),
        gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        gt_classes=torch.tensor(classes, dtype=torch.long),
    )


def test_builds_detectron2_fcos_from_config():
    model = build_model(_cfg("MODEL.FCOS.NUM_CLS_CONVS", "3", "MODEL.FCOS.NUM_BOX_CONVS", "1"))
    assert isinstance(model, D2FCOS)
    # Detectron2's assignment, centerness and losses are used, not copies.
    assert type(model).losses is D2FCOS.losses
    assert type(model).compute_ctrness_targets is D2FCOS.compute_ctrness_targets
    convs = lambda tower: sum(isinstance(m, torch.nn.Conv2d) for m in tower)  # noqa: E731
    assert convs(model.head.cls_tower) == 3 and convs(model.head.bbox_tower) == 1
    assert model.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert model.test_score_thresh == 0.05 and model.test_nms_thresh == 0.6
    assert model.max_detections_per_image == 100 and model.test_topk_candidates == 1000
    assert model.center_sampling_radius == 1.5
    no_centre = build_model(_cfg("MODEL.FCOS.CENTER_SAMPLE", "False"))
    assert no_centre.center_sampling_radius == float("inf")


def test_assignment_hand_worked():
    """A 40x40 box centred at (52, 52): level assignment and centre sampling by hand."""
    model = build_model(_cfg())
    images = torch.zeros(1, 3, 128, 128)
    features = [model.backbone(images)[k] for k in model.head_in_features]
    anchors = model.anchor_generator(features)
    (matched,) = model.match_anchors(anchors, [_instances([[32, 32, 72, 72]], [2])])
    centres = torch.cat([a.get_centers() for a in anchors])
    strides = torch.cat([torch.full((len(a),), s) for a, s in zip(anchors, [8, 16, 32, 64, 128])])
    expected = []
    for (x, y), s in zip(centres.tolist(), strides.tolist()):
        l, t, r, b = x - 32, y - 32, 72 - x, 72 - y
        inside = min(l, t, r, b) > 0
        near = max(abs(x - 52), abs(y - 52)) < 1.5 * s
        lo = 0 if s == 8 else 4 * s
        hi = float("inf") if s == 128 else 8 * s
        expected.append(0 if inside and near and lo < max(l, t, r, b) < hi else -1)
    assert matched.tolist() == expected
    assert sum(e == 0 for e in expected) > 0  # the box has positives (all on P3)


def test_image_without_instances_trains():
    model = build_model(_cfg())
    model.train()
    inputs = [
        {"image": torch.rand(3, 128, 128) * 255, "instances": _instances([[20, 20, 60, 70]], [1])},
        {"image": torch.rand(3, 128, 128) * 255, "instances": _instances([], [])},
    ]
    with EventStorage():
        losses = model(inputs)
        assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
        sum(losses.values()).backward()
        empty = model(inputs[1:])
    assert all(torch.isfinite(v) for v in losses.values())
    assert empty["loss_fcos_loc"].item() == 0 and empty["loss_fcos_ctr"].item() == 0
    assert empty["loss_fcos_cls"].item() > 0


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.FCOS.FPN_STRIDES", "[8, 16, 32, 64]"], "MODEL.FCOS.FPN_STRIDES is [8, 16, 32, 64]"),
        (["MODEL.FCOS.IN_FEATURES", "['p2', 'p3']"], "MODEL.FCOS.IN_FEATURES names ['p2']"),
        (["MODEL.FCOS.LOC_LOSS_TYPE", "iou"], "MODEL.FCOS.LOC_LOSS_TYPE is 'iou'"),
        (["MODEL.FCOS.SIZES_OF_INTEREST", "[32, 64, 128, 256]"], "SIZES_OF_INTEREST is [32"),
    ],
)
def test_bad_keys_name_the_key(opts, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_model(_cfg(*opts))


def test_paper_configs_build():
    for name in ("fcos_R_50_FPN", "fcos_R_101_FPN", "fcos_X_101_32x8d_FPN"):
        cfg = get_cfg()
        add_cxr_config(cfg)
        cfg.merge_from_file(os.path.join("configs", "Phantom", f"{name}.yaml"))
        assert cfg.MODEL.META_ARCHITECTURE == "FCOS" and cfg.MODEL.FCOS.POST_NMS_TOPK_TEST == 300
    cfg.MODEL.FCOS.NUM_CLASSES = 4
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        assert isinstance(build_model(cfg), D2FCOS)  # X-101-32x8d


def test_trains_and_evaluates_on_phantom(tiny_phantom, tmp_path):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('{TINY}_train',)", "DATASETS.TEST", f"('{TINY}_test',)",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.STEPS", "()", "OUTPUT_DIR", str(tmp_path), "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
    ])  # fmt: skip
    check_config(cfg)
    assert cfg.MODEL.FCOS.NUM_CLASSES == 4  # from the dataset
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    # the end-of-training evaluation scored the boxes
    assert "bbox/AP50" in trainer.storage.histories()
