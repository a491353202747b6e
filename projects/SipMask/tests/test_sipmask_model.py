"""SipMask: loss by hand, gradients, every switch, inference outputs."""
import math
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from sipmask import add_sipmask_config, mask_alignment_weighted_loss, per_instance_mask_loss
from sipmask.sipmask import SipMask

from cxr_d2.config import add_cxr_config

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "sipmask_R_18_FPN_cpu.yaml")


def _cfg(*opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.FCOS.NUM_CLASSES", "3", "MODEL.SIPMASK.NUM_BASIS", "4",
                         "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
                         "MODEL.FCOS.NUM_BOX_CONVS", "1",
                         "MODEL.SIPMASK.BASIS_CONV_DIM", "16", *opts])
    return cfg


def _inputs():
    mask = torch.zeros(2, 128, 128, dtype=torch.bool)
    mask[0, 20:50, 15:60] = True
    mask[1, 70:120, 64:100] = True
    boxes = torch.tensor([[15.0, 20, 60, 50], [64, 70, 100, 120]])
    inst = Instances((128, 128), gt_boxes=Boxes(boxes),
                     gt_classes=torch.tensor([1, 2]), gt_masks=BitMasks(mask))
    empty = Instances((128, 128), gt_boxes=Boxes(torch.zeros(0, 4)),
                      gt_classes=torch.zeros(0).long(),
                      gt_masks=BitMasks(torch.zeros(0, 128, 128, dtype=torch.bool)))
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, 128, 128, generator=g) * 255, "instances": inst},
            {"image": torch.rand(3, 128, 128, generator=g) * 255, "instances": empty}]


def _model(*opts):
    torch.manual_seed(0)
    model = build_model(_cfg(*opts))
    # boxes of about 2 strides around each location, so that the mask loss sees pixels
    torch.nn.init.constant_(model.head.bbox_pred.bias, 2.0)
    return model


def test_weighting_loss_by_hand():
    losses = torch.tensor([0.5, 1.0, 2.0])
    ious = torch.tensor([0.8, 0.5, 0.1])
    scores = torch.tensor([0.5, 0.4, 1.0])
    # alpha = (0.4, 0.2, 0.1), mean 7/30 -> (12/7, 6/7, 3/7);
    # mean(alpha * L) = (6/7 + 6/7 + 6/7) / 3
    got = mask_alignment_weighted_loss(losses, ious, scores)
    assert got.item() == pytest.approx(6 / 7)
    plain = mask_alignment_weighted_loss(losses, ious, scores, weighted=False)
    assert plain.item() == pytest.approx(3.5 / 3)
    assert mask_alignment_weighted_loss(losses[:0], ious[:0], scores[:0]).item() == 0


def test_per_instance_loss_by_hand():
    """One 2x2 box on a 4x4 map, grid 1x1, basis of ones, coefficient 0: p = 0.5 inside."""
    basis = torch.ones(1, 4, 4)
    coefficients = torch.zeros(1, 1, 1)
    targets = torch.zeros(1, 4, 4)
    targets[0, 1, 1] = 1  # inside; the other 3 pixels of the box are 0; outside ignored
    targets[0, 3, 3] = 1
    box = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    loss = per_instance_mask_loss(basis, coefficients, box, targets, (1, 1))
    assert loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())  # BCE(0.5, .) = ln 2
    coefficients = torch.full((1, 1, 1), 2.0)  # p = sigmoid(2): -(ln p + 3 ln(1 - p)) / 4
    p = torch.sigmoid(torch.tensor(2.0))
    box = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    loss = per_instance_mask_loss(basis, coefficients, box, targets, (1, 1))
    assert loss.item() == pytest.approx((-(p.log() + 3 * (1 - p).log()) / 4).item(), rel=1e-5)


def test_per_instance_loss_is_bce_of_smp_and_keeps_gradients_when_saturated():
    """The loss from each pixel's sub-region logit equals BCE on SMP's output (every grid,
    fractional boxes), and still has a gradient where SMP's sigmoid saturates to 0 or 1."""
    from sipmask import spatial_mask_prediction
    from sipmask.smp import subregion_masks

    torch.manual_seed(0)
    basis = torch.randn(3, 9, 11, dtype=torch.float64)
    boxes = torch.tensor([[0.5, 1.2, 8.7, 7.9], [-2.0, 3.5, 5.25, 12.0]], dtype=torch.float64)
    targets = (torch.rand(2, 9, 11) > 0.5).double()
    for grid in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4)]:
        coefficients = torch.randn(2, grid[0] * grid[1], 3, dtype=torch.float64)
        loss, probs = per_instance_mask_loss(basis, coefficients, boxes, targets, grid, True)
        smp = spatial_mask_prediction(basis, coefficients, boxes, grid)
        torch.testing.assert_close(probs, smp)
        inside = subregion_masks(boxes, grid, 9, 11).any(dim=1)
        bce = -(targets * smp.log() + (1 - targets) * (1 - smp).log())  # inf outside the box
        bce = torch.where(inside, bce, torch.zeros_like(bce))
        torch.testing.assert_close(loss, bce.sum((1, 2)) / inside.sum((1, 2)))
    # saturated: logit -60 where the target is 1 -> loss 60, gradient -1 per pixel (not 0)
    coefficients = torch.full((1, 1, 1), -60.0, requires_grad=True)
    loss = per_instance_mask_loss(torch.ones(1, 2, 2), coefficients,
                                  torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.ones(1, 2, 2), (1, 1))
    assert loss.item() == pytest.approx(60.0)
    loss.sum().backward()
    assert coefficients.grad.item() == pytest.approx(-1.0)


def test_gradients_reach_every_learning_part():
    model = _model()
    model.train()
    with EventStorage():
        losses = model(_inputs())
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask"}
    assert losses["loss_mask"].item() > 0
    losses["loss_mask"].backward()
    head = model.head
    for name, param in [
        ("feature_align.weight", head.feature_align.weight),
        ("feature_align.offset.weight", head.feature_align.offset.weight),
        ("coefficients.weight", head.coefficients.weight),
        ("basis conv", head.basis_module.conv.weight),
        ("basis out", head.basis_module.out.weight),
        ("cls tower", head.cls_tower[0].weight),
        ("box tower (basis)", head.bbox_tower[0].weight),
        ("backbone", next(model.backbone.parameters())),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # the mask loss does not move the boxes (they are detached) nor the class scores
    assert head.bbox_pred.weight.grad is None or head.bbox_pred.weight.grad.abs().sum() == 0
    assert head.cls_logits.weight.grad is None or head.cls_logits.weight.grad.abs().sum() == 0


@pytest.mark.parametrize(
    "opts",
    [
        [],
        ["MODEL.SIPMASK.BASIS_IN_FEATURES", "['p3']"],  # no CBM
        ["MODEL.SIPMASK.FEATURE_ALIGN", "False"],
        ["MODEL.SIPMASK.WEIGHTED_LOSS", "False"],
        ["MODEL.SIPMASK.GRID", "(1, 1)"],
        ["MODEL.SIPMASK.GRID", "(1, 2)"],
        ["MODEL.SIPMASK.GRID", "(3, 3)"],
        ["MODEL.SIPMASK.GRID", "(4, 4)", "MODEL.SIPMASK.MAX_MASK_POSITIVES", "5"],
        ["MODEL.SIPMASK.MASK_LOSS_BOXES", "gt"],
        ["MODEL.SIPMASK.MASK_SCORING.ENABLED", "True", "MODEL.SIPMASK.MASK_SCORING.PADDING", "1"],
        # the switches of the behaviour before issue 18 (the defaults are the official code's)
        ["MODEL.SIPMASK.POSTPROCESS", "detectron2", "MODEL.SIPMASK.MASK_PASTE", "box",
         "MODEL.SIPMASK.REG_RELU", "True", "MODEL.SIPMASK.BASIS_ORDER", "3x3-1x1",
         "MODEL.SIPMASK.FEATURE_ALIGN_GROUPS", "1", "MODEL.SIPMASK.FEATURE_ALIGN_NORM", "''"],
    ],
)
def test_every_switch_trains_and_predicts(opts):
    model = _model(*opts)
    model.train()
    with EventStorage():
        losses = model(_inputs())
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    model.eval()
    model.test_score_thresh = 0.0
    with torch.no_grad():
        (out,) = model([{"image": _inputs()[0]["image"], "height": 256, "width": 200}])
    r = out["instances"]
    assert 0 < len(r) <= 100
    assert r.pred_masks.shape == (len(r), 256, 200) and r.pred_masks.dtype == torch.bool
    # masks lie inside their boxes; the official pasting upsamples the whole basis-resolution
    # mask bilinearly, which spreads it by up to one basis pixel (2 output pixels here: the
    # output is at most 2x the 128 px input, basis stride 2, so 4 px)
    margin = 0.0 if model.mask_paste == "box" else 2.0 * model._basis_stride
    for box, mask in zip(r.pred_boxes.tensor, r.pred_masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs):
            assert xs.min() + 0.5 >= box[0] - margin and xs.max() + 0.5 < box[2] + margin
            assert ys.min() + 0.5 >= box[1] - margin and ys.max() + 0.5 < box[3] + margin


def test_feature_align_starts_as_plain_conv():
    model = _model()
    fa = model.head.feature_align
    x, reg = torch.randn(1, 64, 8, 8), torch.rand(1, 4, 8, 8) * 5
    # official: a bias-free conv, GroupNorm(32), ReLU; offsets from a zero-initialised,
    # bias-free 1x1 conv with 4 offset groups
    assert fa.bias is None and isinstance(fa.norm, torch.nn.GroupNorm) and fa.norm.num_groups == 32
    assert fa.offset.bias is None and fa.offset.out_channels == 4 * 2 * 9
    plain = torch.relu(fa.norm(torch.nn.functional.conv2d(x, fa.weight, padding=1)))
    torch.testing.assert_close(fa(x, reg), plain, atol=1e-5, rtol=1e-4)


def test_bad_grid_names_the_key():
    from cxr_d2.errors import ConfigError

    with pytest.raises(ConfigError, match="MODEL.SIPMASK.BASIS_IN_FEATURES"):
        build_model(_cfg("MODEL.SIPMASK.BASIS_IN_FEATURES", "['p2']"))
    assert isinstance(_model(), SipMask)


def test_every_project_config_loads():
    import glob

    folder = os.path.join(os.path.dirname(__file__), "..", "configs")
    files = sorted(glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True))
    assert len(files) >= 15
    for path in files:
        cfg = get_cfg()
        add_cxr_config(cfg)
        add_sipmask_config(cfg)
        cfg.merge_from_file(path)
        expected = "SipMaskVIS" if f"{os.sep}vis{os.sep}" in path else "SipMask"
        assert cfg.MODEL.META_ARCHITECTURE == expected, path
    full = get_cfg()
    add_cxr_config(full)
    add_sipmask_config(full)
    full.merge_from_file(os.path.join(folder, "ablations", "sp_cbm_wl_fa.yaml"))
    s = full.MODEL.SIPMASK
    assert s.FEATURE_ALIGN and s.WEIGHTED_LOSS and tuple(s.GRID) == (2, 2)
    assert len(s.BASIS_IN_FEATURES) == 3


def test_mask_loss_boxes_gt_crops_by_the_ground_truth():
    """With point-like predicted boxes the official crop sees no pixel (loss 0); cropping by
    the ground-truth boxes gives the masks a loss from the first step."""
    losses = {}
    for mode in ("pred", "gt"):
        model = _model("MODEL.SIPMASK.MASK_LOSS_BOXES", mode,
                       "MODEL.SIPMASK.WEIGHTED_LOSS", "False")
        torch.nn.init.constant_(model.head.bbox_pred.bias, -5.0)  # ReLU -> boxes of size 0
        model.train()
        with EventStorage():
            losses[mode] = model(_inputs())["loss_mask"]
    assert losses["pred"].item() == 0 and losses["gt"].item() > 0
    with pytest.raises(Exception, match="MASK_LOSS_BOXES"):
        _model("MODEL.SIPMASK.MASK_LOSS_BOXES", "union")


ABLATIONS = sorted(
    os.path.basename(p)
    for p in __import__("glob").glob(os.path.join(os.path.dirname(CONFIG), "ablations", "*.yaml"))
)


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_ablation_config_trains_a_step(name):
    """Each ablation config (Tables 2-3) as written, shrunk to R-18 and a 128 px input."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(os.path.join(os.path.dirname(CONFIG), "ablations", name))
    switches = (tuple(cfg.MODEL.SIPMASK.BASIS_IN_FEATURES), tuple(cfg.MODEL.SIPMASK.GRID),
                cfg.MODEL.SIPMASK.FEATURE_ALIGN, cfg.MODEL.SIPMASK.WEIGHTED_LOSS)  # fmt: skip
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "MODEL.FCOS.NUM_CLASSES", "3", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.FCOS.NUM_CLS_CONVS",
        "1", "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.SIPMASK.NUM_BASIS", "4",
        "MODEL.SIPMASK.BASIS_CONV_DIM", "16",
    ])  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    torch.nn.init.constant_(model.head.bbox_pred.bias, 2.0)
    head = model.head
    assert head.feature_align.deformable == switches[2] and model.weighted_loss == switches[3]
    assert model.grid == switches[1] and len(head.basis_in_levels) == len(switches[0])
    assert head.coefficients.out_channels == switches[1][0] * switches[1][1] * 4
    model.train()
    with EventStorage():
        losses = model(_inputs())
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    assert head.coefficients.weight.grad.abs().sum() > 0


def _bilinear_clamped(grid, u, v):
    """grid (H, W) sampled at (u, v) in pixel-centre coordinates (pixel i's centre is i), edges
    clamped."""
    height, width = grid.shape
    u, v = min(max(u, 0.0), width - 1.0), min(max(v, 0.0), height - 1.0)
    i0, j0 = int(math.floor(u)), int(math.floor(v))
    i1, j1 = min(i0 + 1, width - 1), min(j0 + 1, height - 1)
    a, b = u - i0, v - j0
    top = (1 - a) * grid[j0, i0] + a * grid[j0, i1]
    bottom = (1 - a) * grid[j1, i0] + a * grid[j1, i1]
    return (1 - b) * top + b * bottom


def test_paste_masks_matches_per_pixel_sampling():
    """Every output pixel whose centre is inside its box takes the bilinear sample of the basis
    map at its input position, thresholded; every other pixel is False."""
    from sipmask import paste_masks

    torch.manual_seed(0)
    probs = torch.rand(3, 6, 8, dtype=torch.float64)  # basis maps of a 12 x 16 padded input
    image_size, output_size, stride = (11, 15), (17, 23), 2  # input resized from the output
    boxes = torch.tensor(
        [[2.3, 1.7, 15.2, 12.9], [-4.0, 5.0, 6.5, 30.0], [10.0, 3.0, 10.4, 3.2]], dtype=torch.float64
    )
    got = paste_masks(probs, boxes, stride, image_size, output_size, 0.5)
    assert got.shape == (3, *output_size) and got.dtype == torch.bool
    for p, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        for y in range(output_size[0]):
            for x in range(output_size[1]):
                inside = x1 <= x + 0.5 < x2 and y1 <= y + 0.5 < y2
                u = (x + 0.5) * image_size[1] / output_size[1] / stride - 0.5
                v = (y + 0.5) * image_size[0] / output_size[0] / stride - 0.5
                expected = inside and _bilinear_clamped(probs[p], u, v) > 0.5
                assert bool(got[p, y, x]) == expected, (p, x, y)


def test_cpu_gather_path_gives_torchvision_predictions(monkeypatch):
    """Inference with feature alignment on the CPU gather path (cxr_d2/layers/deform_conv_cpu.py)
    gives the detections and masks of torchvision's deformable-conv kernel: offsets made
    non-zero (as in a trained model), 100 detections per image, score threshold 0."""
    from cxr_d2.layers import deform_conv

    model = _model("MODEL.FCOS.INFERENCE_TH_TEST", "0.0").eval()
    torch.nn.init.normal_(model.head.feature_align.offset.weight, std=0.5)
    inputs = [{"image": x["image"], "height": 256, "width": 256} for x in _inputs()]
    with torch.no_grad():
        fast = model(inputs)
        monkeypatch.setattr(deform_conv, "CPU_GATHER", False)
        ref = model(inputs)
    for a, b in zip(fast, ref):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b) == 100
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-3, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
        assert torch.equal(a.pred_classes, b.pred_classes)
        differ = (a.pred_masks != b.pred_masks).sum().item()
        assert differ <= 1e-4 * b.pred_masks.numel(), differ
