"""SipMask++: mask-IoU targets and loss by hand, the mask-scoring head, the DCN backbone."""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn import functional as F
from sipmask import add_sipmask_config
from sipmask.mask_scoring import MaskIoUHead, mask_iou_loss, mask_iou_targets
from test_sipmask_model import _inputs, _model

from cxr_d2.config import add_cxr_config
from cxr_d2.errors import ConfigError
from cxr_d2.modeling.backbone.deform_resnet import DeformBottleneckBlock

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs")
# the 128 px test inputs give 64 px masks: too small for the official unpadded convs
SCORING = ["MODEL.SIPMASK.MASK_SCORING.ENABLED", "True",
           "MODEL.SIPMASK.MASK_SCORING.PADDING", "1"]


def test_mask_iou_targets_by_hand():
    probs = torch.zeros(2, 4, 4)
    probs[0, :2, :2] = 0.9  # 4 pixels > 0.4
    probs[0, 2, 0] = 0.41  # one more
    probs[1, :, :] = 0.3  # nothing above the threshold
    gt = torch.zeros(2, 4, 4)
    gt[0, 1:3, 0:2] = 1  # 4 pixels, 3 of them predicted: IoU 3 / (5 + 4 - 3) = 0.5
    gt[1, 0, 0] = 1  # IoU 0
    torch.testing.assert_close(mask_iou_targets(probs, gt, 0.4), torch.tensor([0.5, 0.0]))


def test_mask_iou_loss_by_hand():
    pred = torch.tensor([0.2, 0.9, 0.5, 0.7], requires_grad=True)
    target = torch.tensor([0.6, 0.8, 0.05, 0.3])
    areas = torch.tensor([200.0, 150.0, 500.0, 50.0])
    # kept: 0 and 1 (2 has IoU <= 0.1, 3 a gt smaller than 100 px)
    loss = mask_iou_loss(pred, target, areas, min_iou=0.1, min_gt_area=100)
    torch.testing.assert_close(loss, torch.tensor((0.4**2 + 0.1**2) / 2))
    loss.backward()
    assert pred.grad[2] == 0 and pred.grad[3] == 0 and pred.grad[0] < 0
    assert mask_iou_loss(pred, target * 0, areas).item() == 0


def test_head_picks_the_class_channel():
    torch.manual_seed(0)
    head = MaskIoUHead(num_classes=3, conv_dims=(4, 8))
    torch.nn.init.normal_(head.predictor.weight)
    masks = torch.rand(5, 32, 32)
    classes = torch.tensor([0, 2, 1, 1, 0])
    x = torch.relu(head.predictor(head.convs(masks[:, None]))).amax(dim=(2, 3))  # (5, 3)
    out = head(masks, classes)
    torch.testing.assert_close(out, x[torch.arange(5), classes])
    assert (out >= 0).all() and head(masks[:0], classes[:0]).shape == (0,)


def test_mask_scoring_trains_its_head_only_and_rescales_scores():
    model = _model(*SCORING)
    model.train()
    with EventStorage():
        losses = model(_inputs())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask",
                           "loss_mask_iou"}  # fmt: skip
    assert torch.isfinite(losses["loss_mask_iou"])
    # force training examples: every target counts
    model.mask_iou_min_iou, model.mask_iou_min_gt_area = -1.0, 0.0
    with EventStorage():
        loss = model(_inputs())["loss_mask_iou"]
    assert loss > 0
    loss.backward()
    assert model.mask_iou_head.predictor.weight.grad.abs().sum() > 0
    assert model.mask_iou_head.convs[0].weight.grad.abs().sum() > 0
    # its input is detached: nothing else moves
    assert model.head.coefficients.weight.grad is None
    assert model.head.basis_module.out.weight.grad is None

    model.eval()
    model.test_score_thresh = 0.0
    image = [{"image": _inputs()[0]["image"]}]
    with torch.no_grad():
        head = model.mask_iou_head
        model.mask_iou_head = None
        plain = model(image)[0]["instances"]
        model.mask_iou_head = head
        head.forward = lambda masks, classes: torch.full((len(masks),), 0.5)
        rescored = model(image)[0]["instances"]
    assert len(plain) > 0
    torch.testing.assert_close(rescored.scores, plain.scores * 0.5)


def test_sipmask_plus_plus_config_builds_a_dcn_model():
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, "sipmask++_R_50_FPN_544.yaml"))
    assert cfg.MODEL.SIPMASK.MASK_SCORING.ENABLED and cfg.MODEL.RESNETS.DEFORM_INTERVAL == 3
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.FCOS.NUM_CLASSES", "3", "MODEL.RESNETS.STEM_OUT_CHANNELS",
        "16", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.WIDTH_PER_GROUP", "16",
        "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.FCOS.NUM_CLS_CONVS", "1",
        "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.SIPMASK.NUM_BASIS", "4",
        "MODEL.SIPMASK.BASIS_CONV_DIM", "16", "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.SIPMASK.MASK_SCORING.PADDING", "1",
    ])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    res = model.backbone.bottom_up
    assert [isinstance(b, DeformBottleneckBlock) for b in res.res4] == [True, False, False] * 2
    assert not any(isinstance(b, DeformBottleneckBlock) for b in res.res2)
    model.train()
    with EventStorage():
        losses = model(_inputs())
        sum(losses.values()).backward()
    assert "loss_mask_iou" in losses and all(torch.isfinite(v) for v in losses.values())
    assert res.res3[0].conv2_offset.weight.grad.abs().sum() > 0

    # P6 and P7 from P5, as the official neck (extra_convs_on_inputs False,
    # relu_before_extra_convs): by hand from the FPN's own P5
    model.eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        features = model.backbone(x)
        top = model.backbone.top_block
        p6 = top.p6(features["p5"])
        torch.testing.assert_close(features["p6"], p6)
        torch.testing.assert_close(features["p7"], top.p7(torch.relu(p6)))
    assert top.p6.in_channels == cfg.MODEL.FPN.OUT_CHANNELS  # not res5's 2048 / 8


def test_mask_scoring_convs_are_unpadded_as_the_official_head():
    """Official: six 3x3 stride-2 convs with padding 0 (ConvModule, bias, ReLU), then a 1x1
    conv, ReLU, global max: by hand with F.conv2d; the smallest map they take is 127 px."""
    torch.manual_seed(0)
    head = MaskIoUHead(num_classes=3)
    assert head.min_size == 127
    masks, classes = torch.rand(2, 130, 127), torch.tensor([2, 0])
    x = masks[:, None]
    convs = [m for m in head.convs if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 6 and all(c.padding == (0, 0) for c in convs)
    for conv in convs:
        x = torch.relu(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=0))
    assert x.shape[-2:] == (1, 1)
    x = torch.relu(head.predictor(x)).amax(dim=(2, 3))
    torch.testing.assert_close(head(masks, classes), x[torch.arange(2), classes])
    with pytest.raises(ConfigError, match="MASK_SCORING.PADDING"):
        head(torch.rand(1, 126, 200), torch.tensor([0]))
    padded = MaskIoUHead(num_classes=3, padding=1)
    assert padded.min_size == 1 and padded(torch.rand(1, 20, 20), torch.tensor([1])).shape == (1,)
