"""SSD512: default boxes, matching, hard negative mining and losses against hand-worked values."""

import math

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from cxr_d2.errors import ConfigError
from cxr_d2.modeling.backbone.vgg import L2Norm
from cxr_d2.modeling.ssd.loss import hard_negative_mining, ssd_losses, ssd_match
from cxr_d2.modeling.ssd.prior import SSDPriorGenerator, ssd_cell_priors

from tests.helpers import base_config

R2 = math.sqrt(2)


def test_cell_priors_hand_worked():
    # min 30, max 60, ratio 2: 30x30, sqrt(1800) square, 30*sqrt2 x 30/sqrt2 and transpose.
    b = ssd_cell_priors(30, 60, [2]).numpy()
    wh = b[:, 2:] - b[:, :2]
    s = math.sqrt(30 * 60)
    np.testing.assert_allclose(
        wh, [[30, 30], [s, s], [30 * R2, 30 / R2], [30 / R2, 30 * R2]], rtol=1e-6
    )
    np.testing.assert_allclose(b[:, :2], -wh / 2)


def test_prior_grid_order_and_centres():
    gen = SSDPriorGenerator(
        min_sizes=[8], max_sizes=[32], aspect_ratios=[[3]], strides=[8], offset=0.5
    )
    assert gen.num_cell_anchors == [4]
    priors = gen([torch.zeros(1, 1, 2, 3)])[0].tensor  # H=2, W=3
    assert priors.shape == (2 * 3 * 4, 4)
    centres = ((priors[:, :2] + priors[:, 2:]) / 2).view(2, 3, 4, 2)
    for i in range(2):
        for j in range(3):
            # every box of cell (i, j) is centred at ((j + .5) * 8, (i + .5) * 8)
            assert torch.allclose(
                centres[i, j], torch.tensor([(j + 0.5) * 8, (i + 0.5) * 8]).expand(4, 2)
            )
    # the first box of cell (0, 1) is 8x8 around (12, 4)
    assert torch.allclose(priors[4], torch.tensor([8.0, 0.0, 16.0, 8.0]))
    # the sqrt(8*32) = 16 square
    assert torch.allclose(priors[1], torch.tensor([-4.0, -4.0, 12.0, 12.0]))


def ssd_cfg(**over):
    return base_config("configs/Base-SSD.yaml", **{"MODEL.SSD.NUM_CLASSES": 4, **over})


def narrow_ssd512_cfg():
    """SSD512's layout (sources, default boxes) with few channels, so a 512 input is cheap."""
    return ssd_cfg(
        **{
            "MODEL.VGG.STAGE_CHANNELS": [4, 4, 8, 8, 8],
            "MODEL.VGG.FC_CHANNELS": 8,
            "MODEL.VGG.EXTRA_LAYERS": [
                [4, 8, 3, 2, 1],
                [4, 8, 3, 2, 1],
                [4, 8, 3, 2, 1],
                [4, 8, 3, 2, 1],
                [4, 8, 4, 1, 1],
            ],
            "MODEL.VGG.NORM": "",
        }
    )


def test_ssd512_sources_and_prior_count():
    model = build_model(narrow_ssd512_cfg()).eval()
    feats = model.backbone(torch.zeros(1, 3, 512, 512))
    sizes = [feats[f].shape[-1] for f in model.head_in_features]
    assert sizes == [64, 32, 16, 8, 4, 2, 1]
    assert model.prior_generator.num_cell_anchors == [4, 6, 6, 6, 6, 4, 4]
    # 64²·4 + 32²·6 + 16²·6 + 8²·6 + 4²·6 + 2²·4 + 1·4 = 24564, SSD512's count
    priors = model.prior_generator([feats[f] for f in model.head_in_features])
    assert sum(len(p) for p in priors) == 24564
    # conv4_3's first default box: 35.84 square centred at (4, 4)
    assert torch.allclose(
        priors[0].tensor[0], torch.tensor([4 - 17.92, 4 - 17.92, 4 + 17.92, 4 + 17.92])
    )


def test_box_coder_is_ssd_variance_encoding():
    prior = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[1.0, 2.0, 11.0, 14.0]])  # centre (6, 8), 10 x 12
    deltas = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)).get_deltas(prior, gt)
    # SSD: ((6-5)/(0.1*10), (8-5)/(0.1*10), log(10/10)/0.2, log(12/10)/0.2)
    assert torch.allclose(deltas, torch.tensor([[1.0, 3.0, 0.0, math.log(1.2) / 0.2]]))


def test_match_threshold_and_best_prior_rule():
    iou = torch.tensor(
        [
            # prior: 0    1     2    3    4
            [0.60, 0.55, 0.10, 0.0, 0.45],  # gt 0
            [0.00, 0.70, 0.30, 0.2, 0.00],  # gt 1
            [0.00, 0.00, 0.35, 0.1, 0.00],  # gt 2: best IoU 0.35 < 0.5, forced onto prior 2
        ]
    )
    matched, positive = ssd_match(iou, 0.5)
    # prior 0 -> gt 0 (0.6); prior 1 -> gt 1 (0.7 beats 0.55); prior 2 forced to gt 2;
    # prior 3 (0.2) and 4 (0.45) unmatched.
    assert positive.tolist() == [True, True, True, False, False]
    assert matched[:3].tolist() == [0, 1, 2]


def test_best_prior_overrides_threshold_match():
    # gt 1's only good prior is prior 0, which gt 0 overlaps more: the best-prior rule gives
    # prior 0 to gt 1 (gt 0 keeps prior 1 through the threshold).
    iou = torch.tensor([[0.9, 0.8], [0.4, 0.1]])
    matched, positive = ssd_match(iou, 0.5)
    # gt 0's best prior is 0 too; gt 1 is processed later and wins it
    assert matched.tolist() == [1, 0] and positive.tolist() == [True, True]


def test_match_without_ground_truth():
    matched, positive = ssd_match(torch.zeros(0, 7), 0.5)
    assert not positive.any() and matched.shape == (7,)


def test_hard_negative_mining_3_to_1():
    loss = torch.tensor([[0.1, 5.0, 0.3, 0.9, 0.2, 0.8, 0.05, 0.7, 0.6, 0.4]])
    pos = torch.zeros(1, 10, dtype=torch.bool)
    pos[0, 1] = True  # the highest loss is a positive: not counted as a negative
    pos[0, 6] = True
    neg = hard_negative_mining(loss, pos, 3)
    # 2 positives -> 6 negatives: the six largest among the others
    assert sorted(neg[0].nonzero().flatten().tolist()) == [2, 3, 5, 7, 8, 9]


def test_hard_negative_mining_clamps_to_available_and_per_image():
    loss = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])
    pos = torch.tensor([[True, True, False, False], [False, False, False, False]])
    neg = hard_negative_mining(loss, pos, 3)
    assert neg[0].tolist() == [False, False, True, True]  # 6 wanted, only 2 negatives exist
    assert not neg[1].any()  # an image with no positive contributes no negative


def test_ssd_losses_hand_computed():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 3)  # 2 classes + background (index 2)
    deltas = torch.randn(1, 5, 4)
    gt_classes = torch.tensor([[0, 2, 2, 2, 2]])
    gt_deltas = torch.randn(1, 5, 4)
    out = ssd_losses(logits, deltas, gt_classes, gt_deltas, neg_pos_ratio=3, beta=1.0)
    lg = logits[0].numpy().astype(np.float64)
    ce = np.log(np.exp(lg).sum(1)) - lg[np.arange(5), gt_classes[0].numpy()]
    negs = sorted(range(1, 5), key=lambda r: -ce[r])[:3]
    np.testing.assert_allclose(out["loss_cls"].item(), ce[0] + ce[negs].sum(), rtol=1e-5)
    d = np.abs(deltas[0, 0].numpy() - gt_deltas[0, 0].numpy()).astype(np.float64)
    sl1 = np.where(d < 1, 0.5 * d**2, d - 0.5).sum()
    np.testing.assert_allclose(out["loss_box_reg"].item(), sl1, rtol=1e-5)


def test_l2norm_gradcheck_and_scale():
    layer = L2Norm(3, scale=20.0).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    y = layer(x)
    assert torch.allclose(y.norm(dim=1), torch.full((2, 2, 2), 20.0, dtype=torch.float64))


def tiny_ssd_cfg():
    """A small SSD for 128 px inputs: conv4_3 (16x16), fc7 (8x8), conv8_2 (4x4), conv9_2 (2x2)."""
    return ssd_cfg(
        **{
            "MODEL.VGG.STAGE_CHANNELS": [8, 16, 16, 32, 32],
            "MODEL.VGG.FC_CHANNELS": 32,
            "MODEL.VGG.EXTRA_LAYERS": [[16, 32, 3, 2, 1], [16, 32, 3, 2, 1]],
            "MODEL.VGG.OUT_FEATURES": ["conv4_3", "fc7", "conv8_2", "conv9_2"],
            "MODEL.VGG.NORM": "",
            "MODEL.SSD.IN_FEATURES": ["conv4_3", "fc7", "conv8_2", "conv9_2"],
            "MODEL.SSD.PRIOR.MIN_SIZES": [8.0, 16.0, 32.0, 64.0],
            "MODEL.SSD.PRIOR.MAX_SIZES": [16.0, 32.0, 64.0, 128.0],
            "MODEL.SSD.PRIOR.ASPECT_RATIOS": [[2], [2], [2], [2]],
            "MODEL.SSD.PRIOR.STEPS": [8, 16, 32, 64],
        }
    )


def _inputs(n=2, size=128, boxes=((20.0, 30.0, 60.0, 70.0),)):
    out = []
    for _ in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.zeros(len(inst.gt_boxes), dtype=torch.int64)
        out.append(
            {
                "image": torch.randint(0, 255, (3, size, size), dtype=torch.uint8).float(),
                "instances": inst,
            }
        )
    return out


def test_training_step_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model(tiny_ssd_cfg())
    model.train()
    # one box per source layer, centred on its grid and sized for it, so each has positives
    boxes = (
        (6.0, 6.0, 18.0, 18.0),
        (60.0, 12.0, 84.0, 36.0),
        (24.0, 56.0, 72.0, 104.0),
        (64.0, 64.0, 128.0, 128.0),
    )
    with EventStorage():
        losses = model(_inputs(boxes=boxes))
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    no_grad = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not no_grad, no_grad


def test_empty_instances_give_zero_box_loss():
    model = build_model(tiny_ssd_cfg())
    model.train()
    with EventStorage():
        losses = model(_inputs(boxes=()))
    assert losses["loss_box_reg"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    with EventStorage():  # one image with, one without boxes
        batch = _inputs(1) + _inputs(1, boxes=())
        losses = model(batch)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_inference_boxes_in_original_image_coordinates():
    torch.manual_seed(0)
    model = build_model(tiny_ssd_cfg()).eval()
    model.score_thresh = 0.0
    x = _inputs(1)[0]
    with torch.no_grad():
        small = model([{"image": x["image"]}])[0]["instances"]
        big = model([{"image": x["image"], "height": 256, "width": 512}])[0]["instances"]
    assert small.has("pred_boxes") and small.has("scores") and small.has("pred_classes")
    assert len(small) > 0 and small.image_size == (128, 128) and big.image_size == (256, 512)
    scale = torch.tensor([4.0, 2.0, 4.0, 2.0])
    assert torch.allclose(big.pred_boxes.tensor, small.pred_boxes.tensor * scale, atol=1e-3)
    assert small.pred_classes.max() < 4 and (small.scores <= 1).all()


def test_bad_prior_config_names_the_key():
    cfg = tiny_ssd_cfg()
    cfg.MODEL.SSD.PRIOR.MIN_SIZES = [8.0, 16.0]
    with pytest.raises(ConfigError, match="MODEL.SSD.PRIOR.MIN_SIZES has 2 entries"):
        build_model(cfg)
