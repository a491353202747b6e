"""BlendMask: the bottom module, top layer, semantic loss and blender, the model, its configs."""

import math
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_d2.config import add_cxr_config, resolve_num_classes
from cxr_d2.errors import ConfigError
from cxr_d2.modeling.blendmask import (
    BlendMask,
    Blender,
    ProtoNet,
    TopLayer,
    blender_loss,
    decode_detections,
    semantic_loss,
    semantic_targets,
)

CONFIG = os.path.join("configs", "Phantom", "blendmask_R_18_FPN_cpu.yaml")
ADELAIDET = os.path.join(os.path.dirname(__file__), "configs", "BlendMask")
# A narrow model for 64-128 px tests.
NARROW = [
    "MODEL.FCOS.NUM_CLASSES", "4", "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.BASIS_MODULE.CONVS_DIM", "32",
    "MODEL.BASIS_MODULE.NUM_CONVS", "1",
]  # fmt: skip


def _cfg(*opts, config=CONFIG):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(config)
    cfg.merge_from_list(list(opts))
    if cfg.MODEL.BASIS_MODULE.NUM_CLASSES == 0:
        cfg.MODEL.BASIS_MODULE.NUM_CLASSES = cfg.MODEL.FCOS.NUM_CLASSES
    return cfg


def _instances(boxes, classes, size=128):
    """GT with rectangular masks filling each box (XYXY, integer pixels)."""
    masks = torch.zeros((len(boxes), size, size), dtype=torch.bool)
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        m[y1:y2, x1:x2] = True
    return Instances(
        (size, size),
        gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        gt_classes=torch.tensor(classes, dtype=torch.long),
        gt_masks=BitMasks(masks),
    )


def _grads_everywhere(module):
    return all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_basis_module_shapes_and_gradients():
    shapes = {
        "p3": ShapeSpec(channels=8, stride=8),
        "p4": ShapeSpec(channels=8, stride=16),
        "p5": ShapeSpec(channels=8, stride=32),
    }
    net = ProtoNet(
        input_shape=shapes,
        in_features=["p3", "p4", "p5"],
        num_bases=5,
        convs_dim=32,
        num_convs=2,
        norm="GN",
        num_classes=3,
    )
    feats = {
        k: torch.randn(2, 8, 64 // s.stride * 2, 96 // s.stride * 2) for k, s in shapes.items()
    }  # a 128 x 192 input
    bases, sem = net(feats)
    assert net.stride == 4 and bases.shape == (2, 5, 32, 48) and sem.shape == (2, 4, 16, 24)
    (bases.square().mean() + sem.square().mean()).backward()
    assert _grads_everywhere(net)
    no_sem = ProtoNet(input_shape=shapes, in_features=["p3"], num_bases=2, norm="")
    assert no_sem(feats)[1] is None and no_sem.seg_head is None


def test_top_layer_shapes_and_gradients():
    top = TopLayer(in_channels=8, num_bases=4, attn_size=7)
    feats = [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8)]
    out = top(feats)
    assert [o.shape for o in out] == [(2, 196, 16, 16), (2, 196, 8, 8)] and top.attn_len == 196
    sum(o.sum() for o in out).backward()
    assert _grads_everywhere(top)


def test_semantic_targets_hand_worked():
    """A 12x12 box holding a 4x4 one; labels at the centres (4i + 2, 4j + 2) of 4-px cells."""
    gt = _instances([[2, 2, 14, 14], [6, 6, 10, 10]], [0, 2], size=16)
    (labels,) = semantic_targets([gt], (5, 5), stride=4)  # a padded 20 x 20 input
    expected = torch.zeros(5, 5, dtype=torch.long)
    for i in range(5):
        for j in range(5):
            y, x = 4 * i + 2, 4 * j + 2
            if 6 <= y < 10 and 6 <= x < 10:
                expected[i, j] = 3  # the small one, drawn over the large one
            elif 2 <= y < 14 and 2 <= x < 14:
                expected[i, j] = 1
    assert labels.tolist() == expected.tolist()
    assert expected.eq(3).sum() == 1 and expected.eq(1).sum() == 8
    empty = _instances([], [], size=16)
    assert semantic_targets([empty], (5, 5), 4).abs().sum() == 0

    logits = torch.zeros(1, 4, 5, 5, requires_grad=True)
    loss = semantic_loss(logits, [gt], stride=4)
    assert loss.item() == pytest.approx(math.log(4))  # uniform logits over 3 + 1 classes
    loss.backward()
    assert logits.grad[0, 3, 1, 1] < 0 and logits.grad[0, 0, 1, 1] > 0  # toward label 3


def _bilinear(img, y, x):
    """torchvision's RoIAlign sampling of one (H, W) map at (y, x), by hand."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * img[y0, x0]
        + (1 - ly) * lx * img[y0, x1]
        + ly * (1 - lx) * img[y1, x0]
        + ly * lx * img[y1, x1]
    )


def _upsample(value, m, r, y, x):
    """F.interpolate bilinear (align_corners False) of an m x m map to r x r, at (y, x)."""

    def coord(d):
        s = max((d + 0.5) * m / r - 0.5, 0.0)
        i0 = min(int(math.floor(s)), m - 1)
        return i0, min(i0 + 1, m - 1), s - i0

    y0, y1, ly = coord(y)
    x0, x1, lx = coord(x)
    return (
        (1 - ly) * (1 - lx) * value[y0][x0]
        + (1 - ly) * lx * value[y0][x1]
        + ly * (1 - lx) * value[y1][x0]
        + ly * lx * value[y1][x1]
    )


def test_blender_matches_a_hand_computation_for_one_box():
    torch.manual_seed(0)
    k, m, r, stride = 3, 3, 5, 4
    bases = torch.randn(1, k, 10, 12, dtype=torch.float64)
    box = [6.0, 3.0, 37.0, 30.5]  # input pixels; x2 beyond the bases' last column centre
    attn = torch.randn(1, k * m * m, dtype=torch.float64)
    blender = Blender(
        attn_size=m,
        bottom_resolution=r,
        pooler_type="ROIAlignV2",
        pooler_scale=1 / stride,
        sampling_ratio=1,
    )
    got = blender(bases, [Boxes(torch.tensor([box], dtype=torch.float64))], attn)[0]

    a = attn.view(k, m, m).tolist()
    x1, y1, x2, y2 = (c / stride - 0.5 for c in box)  # aligned RoIAlign: half-pixel shift
    bin_w, bin_h = (x2 - x1) / r, (y2 - y1) / r
    expected = torch.zeros(r, r, dtype=torch.float64)
    for i in range(r):
        for j in range(r):
            y, x = y1 + (i + 0.5) * bin_h, x1 + (j + 0.5) * bin_w  # one sample per bin
            pooled = [_bilinear(bases[0, c], y, x) for c in range(k)]
            logits = [_upsample(a[c], m, r, i, j) for c in range(k)]
            z = sum(math.exp(v) for v in logits)
            expected[i, j] = sum(p * math.exp(v) / z for p, v in zip(pooled, logits))
    torch.testing.assert_close(got, expected)


def test_blender_loss_weights_locations_by_centerness():
    logits = torch.tensor([[[2.0, -1.0]], [[0.5, 0.5]]])  # (P=2, 1, 2)
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    bce = [
        (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2,
        (math.log1p(math.exp(0.5)) + math.log1p(math.exp(-0.5))) / 2,
    ]
    loss = blender_loss(logits, targets, torch.tensor([0.25, 0.75]))
    assert loss.item() == pytest.approx(0.25 * bce[0] + 0.75 * bce[1])
    assert blender_loss(logits, targets, torch.tensor([1.0, 0.0])).item() == pytest.approx(bce[0])


def test_decode_thresholds_as_adelaidet():
    """THRESH_WITH_CTR False keeps sigmoid(class) > t; True keeps sigmoid(class*ctr) > t."""
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    anchors = [Boxes(torch.tensor([[4.0, 4, 12, 12], [20, 4, 28, 12], [36, 4, 44, 12]]))]
    logits = [torch.tensor([[logit(0.9)], [logit(0.3)], [logit(0.04)]])]
    ctr = [torch.tensor([[logit(0.5)], [logit(0.1)], [logit(0.99)]])]
    deltas = [torch.full((3, 4), 0.5)]  # (l, t, r, b) in anchor sizes: 4 px
    attn = [torch.arange(3.0)[:, None].repeat(1, 4)]
    kw = dict(
        box2box_transform=Box2BoxTransformLinear(normalize_by_size=True),
        score_thresh=0.05,
        topk_candidates=10,
        nms_thresh=0.6,
        max_detections=10,
    )
    plain = decode_detections(
        anchors, logits, deltas, ctr, attn, (64, 64), thresh_with_ctr=False, **kw
    )
    with_ctr = decode_detections(
        anchors, logits, deltas, ctr, attn, (64, 64), thresh_with_ctr=True, **kw
    )
    assert plain.attentions[:, 0].tolist() == [0.0, 1.0]  # 0.9 and 0.3 pass, 0.04 does not
    assert with_ctr.attentions[:, 0].tolist() == [0.0]  # 0.45 passes, 0.03 does not
    assert plain.scores.tolist() == pytest.approx([math.sqrt(0.45), math.sqrt(0.03)])
    assert plain.pred_boxes.tensor[0].tolist() == [4.0, 4.0, 12.0, 12.0]


def test_trains_with_and_without_instances():
    torch.manual_seed(0)
    model = build_model(_cfg(*NARROW))
    assert isinstance(model, BlendMask) and model.thresh_with_ctr
    model.train()
    inputs = [
        {"image": torch.rand(3, 64, 64) * 255, "instances": _instances([[8, 10, 40, 44]], [1], 64)},
        {"image": torch.rand(3, 64, 64) * 255, "instances": _instances([], [], 64)},
    ]
    with EventStorage():
        losses = model(inputs)
        assert set(losses) == {
            "loss_fcos_cls",
            "loss_fcos_loc",
            "loss_fcos_ctr",
            "loss_mask",
            "loss_basis_sem",
        }
        assert all(torch.isfinite(v) for v in losses.values())
        assert losses["loss_mask"] > 0
        sum(losses.values()).backward()
        for part in (model.top_layer, model.basis_module.tower, model.basis_module.seg_head):
            assert _grads_everywhere(part), part
        model.zero_grad()
        empty = model(inputs[1:])  # a normal film: no mask loss, the rest trains
        sum(empty.values()).backward()
    assert empty["loss_mask"].item() == 0 and empty["loss_fcos_loc"].item() == 0
    assert empty["loss_basis_sem"].item() > 0 and empty["loss_fcos_cls"].item() > 0


def test_inference_pastes_masks_at_output_resolution():
    torch.manual_seed(0)
    model = build_model(
        _cfg(*NARROW, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.BLENDMASK.VISUALIZE", "True")
    )
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 64, 96) * 255, "height": 128, "width": 192}])
    r = out["instances"]
    assert len(r) > 0 and r.pred_masks.shape == (len(r), 128, 192)
    assert r.pred_masks.dtype == torch.bool and r.image_size == (128, 192)
    boxes = r.pred_boxes.tensor
    assert (boxes[:, 2] <= 192).all() and (boxes[:, 3] <= 128).all()
    ys, xs = torch.meshgrid(torch.arange(128), torch.arange(192), indexing="ij")
    for mask, (x1, y1, x2, y2) in zip(r.pred_masks, boxes.tolist()):
        outside = (
            (xs < math.floor(x1))
            | (xs > math.ceil(x2))
            | (ys < math.floor(y1))
            | (ys > math.ceil(y2))
        )
        assert not mask[outside].any()  # pasted into its box only
    assert out["bases"].shape == (4, 16, 24)
    assert out["sem_thing_seg"].shape == (5, 128, 192)


def test_inference_without_detections():
    """A threshold nothing passes: empty Instances with masks of the output size."""
    model = build_model(_cfg(*NARROW, "MODEL.FCOS.INFERENCE_TH_TEST", "1.0"))
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 64, 64) * 255, "height": 96, "width": 80}])
    r = out["instances"]
    assert len(r) == 0 and r.pred_masks.shape == (0, 96, 80) and r.image_size == (96, 80)


@pytest.mark.parametrize(
    "opts, message",
    [
        (
            ["MODEL.BLENDMASK.POOLER_SCALES", "(0.125,)"],
            "MODEL.BLENDMASK.POOLER_SCALES is (0.125,)",
        ),
        (["MODEL.BASIS_MODULE.COMMON_STRIDE", "4"], "MODEL.BASIS_MODULE.COMMON_STRIDE is 4"),
        (["MODEL.BASIS_MODULE.IN_FEATURES", "['p2', 'p3']"], "MODEL.BASIS_MODULE.IN_FEATURES"),
        (["MODEL.BASIS_MODULE.NAME", "DeconvNet"], "MODEL.BASIS_MODULE.NAME is 'DeconvNet'"),
        (["MODEL.BLENDMASK.POOLER_TYPE", "ROIAlignRotated"], "MODEL.BLENDMASK.POOLER_TYPE"),
        (["MODEL.BLENDMASK.TOP_INTERP", "linear"], "MODEL.BLENDMASK.TOP_INTERP is 'linear'"),
        (["MODEL.MASK_ON", "False"], "MODEL.MASK_ON is False"),
        (["MODEL.PANOPTIC_FPN.COMBINE.ENABLED", "True"], "MODEL.PANOPTIC_FPN.COMBINE.ENABLED"),
        (["MODEL.FCOS.TOP_LEVELS", "3"], "MODEL.FCOS.TOP_LEVELS is 3"),
        (["MODEL.FCOS.TOP_LEVELS", "1"], "MODEL.FCOS.IN_FEATURES names ['p7']"),
    ],
)
def test_bad_keys_name_the_key(opts, message):
    with pytest.raises(
        ConfigError,
        match=message.replace("[", r"\[")
        .replace("]", r"\]")
        .replace("(", r"\(")
        .replace(")", r"\)"),
    ):
        build_model(_cfg(*NARROW, *opts))


def test_unresolved_semantic_classes_name_the_key():
    cfg = _cfg(*NARROW)
    cfg.MODEL.BASIS_MODULE.NUM_CLASSES = 0  # as a config with no dataset to take it from
    with pytest.raises(ConfigError, match="MODEL.BASIS_MODULE.NUM_CLASSES is 0 with LOSS_ON"):
        build_model(cfg)


def test_fcos_backbone_builds_top_levels_from_p5():
    model = build_model(_cfg(*NARROW))
    fpn = model.backbone
    assert fpn.top_block.in_feature == "p5" and fpn.top_block.p6.in_channels == 64
    strides = {k: s.stride for k, s in fpn.output_shape().items()}
    assert strides == {"p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}


@pytest.mark.parametrize(
    "name, levels",
    [
        ("R_50_1x", ["p3", "p4", "p5", "p6", "p7"]),
        ("550_R_50_1x", ["p3", "p4", "p5", "p6"]),
        ("RT_R_50_4x", ["p3", "p4", "p5", "p6"]),
        ("Base-RT", ["p3", "p4", "p5"]),
    ],
)
def test_adelaidet_configs_load_and_build(name, levels):
    """AdelaiDet's published BlendMask configs, _BASE_ pointed at ours; classes from COCO."""
    cfg = _cfg("MODEL.DEVICE", "meta", config=os.path.join(ADELAIDET, f"{name}.yaml"))
    resolve_num_classes(cfg)  # coco_2017_train's metadata, registered by Detectron2
    assert cfg.MODEL.FCOS.NUM_CLASSES == 80 and cfg.MODEL.BASIS_MODULE.NUM_CLASSES == 80
    assert cfg.MODEL.FCOS.THRESH_WITH_CTR and not cfg.MODEL.FCOS.USE_SCALE
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(cfg)
    assert isinstance(model, BlendMask) and model.head_in_features == levels
    assert sorted(model.backbone.output_shape()) == levels
    assert model.basis_module.seg_head[-1].out_channels == 81


def test_adelaidet_550_config_runs():
    """Base-550 (shared towers only, P3-P6) trains and predicts."""
    cfg = _cfg(
        "MODEL.DEVICE",
        "cpu",
        "MODEL.RESNETS.DEPTH",
        "18",
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "64",
        *NARROW,
        "MODEL.FCOS.INFERENCE_TH_TEST",
        "0.0",
        config=os.path.join(ADELAIDET, "550_R_50_1x.yaml"),
    )
    model = build_model(cfg)
    model.train()
    with EventStorage():
        losses = model(
            [
                {
                    "image": torch.rand(3, 64, 64) * 255,
                    "instances": _instances([[8, 10, 40, 44]], [1], 64),
                }
            ]
        )
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 64, 64) * 255, "height": 128, "width": 128}])
    r = out["instances"]
    assert 0 < len(r) <= cfg.MODEL.FCOS.POST_NMS_TOPK_TEST and r.image_size == (128, 128)
    assert r.pred_masks.shape == (len(r), 128, 128) and r.pred_masks.dtype == torch.bool
    assert ((r.scores >= 0) & (r.scores <= 1)).all() and (r.pred_classes < 4).all()
    boxes = r.pred_boxes.tensor
    assert (boxes >= 0).all() and (boxes <= 128).all() and (boxes[:, 2:] >= boxes[:, :2]).all()


def test_phantom_configs_build():
    for name in ("blendmask_R_50_FPN", "blendmask_R_101_FPN", "blendmask_X_101_32x8d_FPN"):
        cfg = _cfg(
            "MODEL.FCOS.NUM_CLASSES", "4", config=os.path.join("configs", "Phantom", f"{name}.yaml")
        )
        assert cfg.MODEL.META_ARCHITECTURE == "BlendMask" and cfg.MODEL.MASK_ON
        assert cfg.MODEL.FCOS.POST_NMS_TOPK_TEST == 300
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        assert isinstance(build_model(cfg), BlendMask)  # X-101-32x8d
