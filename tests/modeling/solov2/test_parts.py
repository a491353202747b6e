"""SOLOv2's parts against hand-worked values: Matrix NMS, Dice loss, target assignment,
CoordConv, boxes from masks; shapes and gradients of every head."""

import math

import numpy as np
import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

from cxr_d2.modeling.solov2.head import SOLOv2InstanceHead, resample_to_strides
from cxr_d2.modeling.solov2.inference import (
    _masks_at_output,
    masks_to_boxes,
    point_nms,
    solov2_inference_single,
)
from cxr_d2.modeling.solov2.layers import DeformConvBlock, add_coords, coord_features, dynamic_conv
from cxr_d2.modeling.solov2.loss import dice_loss, solov2_losses
from cxr_d2.modeling.solov2.mask_branch import SOLOv2MaskBranch
from cxr_d2.modeling.solov2.matrix_nms import matrix_nms
from cxr_d2.modeling.solov2.targets import (
    assign_level,
    downsample_masks,
    mask_centres,
    solov2_targets,
)

# --- Matrix NMS ---------------------------------------------------------------------------


def _three_masks():
    """Three 1 x 10 masks: A = pixels 0-3 (score .9), B = 0-1 (.8), C = 2-5 (.7).

    Areas 4, 2, 4. IoU(A, B) = 2/4 = 0.5, IoU(A, C) = 2/6 = 1/3, IoU(B, C) = 0.
    """
    masks = torch.zeros(3, 1, 10, dtype=torch.bool)
    masks[0, 0, 0:4] = True
    masks[1, 0, 0:2] = True
    masks[2, 0, 2:6] = True
    return masks, torch.tensor([0.9, 0.8, 0.7])


def test_matrix_nms_gaussian_by_hand():
    masks, scores = _three_masks()
    out = matrix_nms(masks, torch.zeros(3, dtype=torch.long), scores, "gaussian", sigma=2.0)
    # comp_A = 0, comp_B = max IoU of B with higher-scored = 0.5.
    # decay_B = f(0.5)/f(0) = exp(-2 * 0.25)
    # decay_C = min(f(1/3)/f(0), f(0)/f(0.5)) = min(exp(-2/9), exp(0.5)) = exp(-2/9)
    expected = [0.9, 0.8 * math.exp(-0.5), 0.7 * math.exp(-2 / 9)]
    assert out.tolist() == pytest.approx(expected, rel=1e-6)


def test_matrix_nms_linear_by_hand():
    masks, scores = _three_masks()
    out = matrix_nms(masks, torch.zeros(3, dtype=torch.long), scores, "linear")
    # decay_B = (1 - 0.5)/(1 - 0) = 0.5; decay_C = min((1 - 1/3)/1, (1 - 0)/(1 - 0.5)) = 2/3
    assert out.tolist() == pytest.approx([0.9, 0.4, 0.7 * 2 / 3], rel=1e-6)


def test_matrix_nms_compensation_and_classes():
    """A mask that is itself suppressed decays less (compensation); other classes never."""
    masks = torch.zeros(3, 1, 10, dtype=torch.bool)
    masks[0, 0, 0:4] = True  # A, .9
    masks[1, 0, 0:3] = True  # B, .8: IoU(A, B) = 3/4
    masks[2, 0, 0:2] = True  # C, .7: IoU(A, C) = 2/4, IoU(B, C) = 2/3
    scores = torch.tensor([0.9, 0.8, 0.7])
    out = matrix_nms(masks, torch.zeros(3, dtype=torch.long), scores, "linear")
    # decay_C = min((1 - 1/2)/(1 - 0), (1 - 2/3)/(1 - 3/4)) = min(0.5, 4/3) = 0.5
    assert out.tolist() == pytest.approx([0.9, 0.8 * 0.25, 0.7 * 0.5], rel=1e-6)
    other = matrix_nms(masks, torch.tensor([0, 1, 2]), scores, "gaussian")
    assert torch.equal(other, scores)


def test_matrix_nms_input_order_and_empty():
    masks, scores = _three_masks()
    perm = torch.tensor([2, 0, 1])
    labels = torch.zeros(3, dtype=torch.long)
    ref = matrix_nms(masks, labels, scores)
    out = matrix_nms(masks[perm], labels[perm], scores[perm])
    assert torch.allclose(out, ref[perm])
    assert matrix_nms(masks[:0], labels[:0], scores[:0]).numel() == 0
    with pytest.raises(ValueError, match="gaussian"):
        matrix_nms(masks, labels, scores, kernel="cosine")


# --- Dice loss ----------------------------------------------------------------------------


def test_dice_loss_by_hand():
    p = torch.tensor([[[0.5, 1.0], [0.0, 0.5]]])
    t = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    # sum(p t) = 1.5, sum(p^2) = 1.5, sum(t^2) = 2: 1 - 3 / (3.5 + 0.002)
    assert dice_loss(p, t).item() == pytest.approx(1 - 3 / 3.502, rel=1e-6)
    assert dice_loss(t, t).item() == pytest.approx(1 - 4 / 4.002, abs=1e-6)
    assert dice_loss(torch.zeros_like(t), t).item() == pytest.approx(1.0)


# --- targets ------------------------------------------------------------------------------


def test_mask_centres_and_downsampling():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 4:8] = True  # rows 2-3, columns 4-7
    masks[1, 0, 0] = True
    centres = mask_centres(masks)
    assert centres.tolist() == [[6.0, 3.0], [0.5, 0.5]]
    # 4 x 4 blocks: mask 0 covers half of block (0, 1) -> 1; mask 1 covers 1/16 of block
    # (0, 0), under half, but a non-empty mask keeps its most covered block
    small = downsample_masks(masks, (8, 12), 4)
    assert small.shape == (2, 2, 3)
    assert small[0].tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert small[1].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    masks[0, 4, 0] = True  # 1/16 of block (1, 0) too: under half, and the mask has a block
    assert downsample_masks(masks, (8, 12), 4)[0].tolist() == [[0, 1, 0], [0, 0, 0]]
    # stride 2: 2 x 2 blocks of mask 0 rows 2-3, columns 4-7 -> row 1, columns 2-3; the
    # added pixel (4, 0) covers a quarter of block (2, 0): dropped
    half = downsample_masks(masks, (8, 12), 2)
    assert half.shape == (2, 4, 6) and half[0].nonzero().tolist() == [[1, 2], [1, 3]]
    full = downsample_masks(masks, (8, 12), 1)
    assert torch.equal(full[:, :8, :8], masks.float()) and full[:, :, 8:].sum() == 0


def test_assign_level_by_hand():
    """A 100 x 100 image, S = 10 (10 px cells), sigma 0.2.

    Instance 0: box (20, 30)-(60, 50), 40 x 20 (size sqrt(800) = 28.3), centre of mass
    (41, 37): centre cell row 3, column 4. Centre region x 41 +- 4 -> columns 3..4,
    y 37 +- 2 -> rows 3..3: cells (3, 3) and (3, 4).
    Instance 1: box (0, 0)-(100, 100) (size 100), centre (55, 55), region +- 10 -> rows and
    columns 4..6, clipped to the 3 x 3 around cell (5, 5): rows 4..6, columns 4..6.
    Instance 2: box 4 x 4 (size 4) -> outside (10, 96): not assigned here.
    """
    boxes = torch.tensor([[20.0, 30, 60, 50], [0, 0, 100, 100], [0, 0, 4, 4]])
    centres = torch.tensor([[41.0, 37.0], [55.0, 55.0], [2.0, 2.0]])
    classes = torch.tensor([1, 2, 0])
    labels, assigned = assign_level(boxes, centres, classes, (100, 100), 10, (10, 200), 0.2, 3)
    expected = torch.full((10, 10), 3)
    expected[4:7, 4:7] = 2  # instance 1 overwrites instance 0 in the shared cell (3, 4)? no:
    expected[3, 3:5] = 1  # row 3 is outside instance 1's rows 4..6
    assert torch.equal(labels, expected)
    exp_assigned = torch.full((10, 10), -1)
    exp_assigned[4:7, 4:7] = 1
    exp_assigned[3, 3:5] = 0
    assert torch.equal(assigned, exp_assigned.flatten())
    # in a level for small instances only instance 2 is positive: cell (0, 0) only
    labels, assigned = assign_level(boxes, centres, classes, (100, 100), 10, (1, 8), 0.2, 3)
    assert (labels != 3).nonzero().tolist() == [[0, 0]] and labels[0, 0] == 0
    assert assigned.tolist().count(2) == 1 and assigned[0] == 2


def test_assign_level_overwrite_and_clipping_at_border():
    """The later instance wins a shared cell; regions are clipped to the grid."""
    boxes = torch.tensor([[0.0, 0, 50, 50], [0, 0, 50, 50]])
    centres = torch.tensor([[1.0, 1.0], [14.0, 1.0]])  # cells (0, 0) and (0, 1)
    labels, assigned = assign_level(
        boxes, centres, torch.tensor([0, 1]), (100, 100), 10, (1, 100), 0.2, 2
    )
    # 0: region x 1 +- 5 -> columns 0..0, y likewise rows 0..0; 1: x 14 +- 5 -> columns 0..1
    assert (assigned.view(10, 10) >= 0).nonzero().tolist() == [[0, 0], [0, 1]]
    assert assigned.view(10, 10)[0, :2].tolist() == [1, 1]
    assert labels[0, :2].tolist() == [1, 1]


def test_solov2_targets_with_an_empty_image():
    inst = Instances((32, 32))
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:16, 8:24] = True
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.tensor([1])
    empty = Instances((32, 32))
    empty.gt_masks = BitMasks(torch.zeros(0, 32, 32, dtype=torch.bool))
    empty.gt_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.long)
    labels, assigned, gt_masks = solov2_targets(
        [inst, empty], (32, 32), 4, [4, 2], [(1, 64), (64, 128)], 0.2, 2
    )
    assert [x.shape for x in labels] == [(2, 16), (2, 4)]
    # centre (16, 12): cell row 1, column 2 of the 4 x 4 (8 px) grid; 16 x 8 box: region
    # x 16 +- 1.6 -> columns 1..2, y 12 +- 0.8 -> row 1: cells 5 and 6
    assert (assigned[0][0] >= 0).nonzero().flatten().tolist() == [5, 6]
    assert (
        labels[0][0, 5] == labels[0][0, 6] == 1
        and (labels[0][1] == 2).all()
        and (assigned[1] == -1).all()
    )
    assert gt_masks[0].shape == (1, 8, 8) and gt_masks[1].shape == (0, 8, 8)


# --- CoordConv, dynamic conv, boxes ----------------------------------------------------------


def test_coord_features():
    x = torch.zeros(2, 5, 3, 4)
    c = coord_features(x)
    assert c.shape == (2, 2, 3, 4)
    assert torch.allclose(c[0, 0, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))  # x per column
    assert torch.allclose(c[1, 1, :, 2], torch.tensor([-1.0, 0.0, 1.0]))  # y per row
    assert torch.equal(c[:, 0, 0], c[:, 0, 2]) and torch.equal(c[:, 1, :, 0], c[:, 1, :, 3])
    y = add_coords(torch.ones(2, 5, 3, 4))
    assert y.shape == (2, 7, 3, 4) and torch.equal(y[:, :5], torch.ones(2, 5, 3, 4))


def test_dynamic_conv_is_a_1x1_conv_per_kernel():
    torch.manual_seed(0)
    kernels, feats = torch.randn(3, 6), torch.randn(6, 5, 7)
    out = dynamic_conv(kernels, feats)
    ref = torch.nn.functional.conv2d(feats[None], kernels[:, :, None, None])[0]
    assert torch.allclose(out, ref, atol=1e-5)
    assert dynamic_conv(kernels[:0], feats).shape == (0, 5, 7)


def test_boxes_from_masks_match_a_per_pixel_computation():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 23, 31)) > 0.97
    masks[4] = False  # an empty mask: a zero box
    boxes = masks_to_boxes(torch.from_numpy(masks)).tensor.numpy()
    for m, box in zip(masks, boxes):
        xs = [x for y in range(m.shape[0]) for x in range(m.shape[1]) if m[y, x]]
        ys = [y for y in range(m.shape[0]) for x in range(m.shape[1]) if m[y, x]]
        expected = [min(xs), min(ys), max(xs) + 1, max(ys) + 1] if xs else [0, 0, 0, 0]
        assert box.tolist() == expected


def test_point_nms_keeps_local_maxima():
    heat = torch.tensor([[[[0.1, 0.9, 0.2], [0.3, 0.4, 0.8], [0.7, 0.1, 0.5]]]])
    out = point_nms(heat)
    # kept where the value is the max of the 2x2 window ending at it (itself, left, above,
    # above-left): 0.8 at (1, 2) loses to 0.9 at (0, 1), 0.5 at (2, 2) to 0.8
    expected = torch.tensor([[[[0.1, 0.9, 0.0], [0.3, 0.0, 0.0], [0.7, 0.0, 0.0]]]])
    assert torch.equal(out, expected)


# --- heads: shapes and gradients ----------------------------------------------------------


def _features(n, channels, sizes, requires_grad=True):
    return [torch.randn(n, channels, h, w, requires_grad=requires_grad) for h, w in sizes]


@pytest.mark.parametrize("dcn", ["", "DCN", "DCNv2"])
def test_instance_head_shapes_and_gradients(dcn):
    torch.manual_seed(0)
    head = SOLOv2InstanceHead(
        in_channels=32, channels=32, num_classes=3, num_kernels=16, num_convs=2,
        num_grids=[8, 5], norm="GN", use_coord_conv=True, dcn_type=dcn, prior_prob=0.01,
    )  # fmt: skip
    feats = _features(2, 32, [(16, 12), (4, 3)])
    cate, kernels = head(feats)
    assert [c.shape for c in cate] == [(2, 3, 8, 8), (2, 3, 5, 5)]
    assert [k.shape for k in kernels] == [(2, 16, 8, 8), (2, 16, 5, 5)]
    assert torch.allclose(cate[0].sigmoid().mean(), torch.tensor(0.01), atol=0.005)
    (sum(c.sum() for c in cate) + sum(k.pow(2).sum() for k in kernels)).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert all(p.grad is not None for p in head.parameters())
    if dcn:
        assert isinstance(head.kernel_tower[-1], DeformConvBlock)


def test_kernel_branch_sees_coordinates():
    """With CoordConv the kernel branch's first conv takes C + 2 channels, the category's C."""
    head = SOLOv2InstanceHead(in_channels=32, channels=32, num_classes=2, num_kernels=8,
                              num_convs=1, num_grids=[4], norm="")  # fmt: skip
    assert head.kernel_tower[0].in_channels == 34 and head.cate_tower[0].in_channels == 32
    plain = SOLOv2InstanceHead(
        in_channels=32,
        channels=32,
        num_classes=2,
        num_kernels=8,
        num_convs=1,
        num_grids=[4],
        norm="",
        use_coord_conv=False,
    )
    assert plain.kernel_tower[0].in_channels == 32


def test_mask_branch_shapes_and_gradients():
    torch.manual_seed(0)
    branch = SOLOv2MaskBranch(in_channels=32, channels=32, num_masks=32, num_levels=4, norm="GN")
    feats = _features(2, 32, [(16, 24), (8, 12), (4, 6), (2, 3)])
    out = branch(feats)
    assert out.shape == (2, 32, 16, 24)
    assert branch.levels[3][0].in_channels == 34  # coordinates on the coarsest level only
    assert branch.levels[2][0].in_channels == 32
    out.pow(2).sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)
    assert all(p.grad is not None for p in branch.parameters())


def test_resample_to_strides():
    feats = _features(1, 4, [(16, 16), (8, 8), (1, 1)], requires_grad=False)
    out = resample_to_strides(feats, [8, 8, 32], (64, 64))
    assert [tuple(x.shape[-2:]) for x in out] == [(8, 8), (8, 8), (2, 2)]
    assert out[1] is feats[1]


def test_losses_gradients_and_no_positives():
    torch.manual_seed(0)
    cate = [torch.randn(2, 3, 4, 4, requires_grad=True)]
    kernels = [torch.randn(2, 5, 4, 4, requires_grad=True)]
    feats = torch.randn(2, 5, 8, 8, requires_grad=True)
    labels = [torch.full((2, 16), 3)]
    assigned = [torch.full((2, 16), -1)]
    labels[0][0, 5], assigned[0][0, 5] = 1, 0
    gt = [torch.zeros(1, 8, 8), torch.zeros(0, 8, 8)]
    gt[0][0, 2:5, 2:5] = 1
    losses = solov2_losses(cate, kernels, feats, labels, assigned, gt, 3)
    mask = torch.sigmoid(kernels[0][0, :, 1, 1] @ feats[0].reshape(5, -1)).reshape(1, 8, 8)
    assert losses["loss_ins"].item() == pytest.approx(3 * dice_loss(mask, gt[0]).item(), 1e-5)
    sum(losses.values()).backward()
    assert kernels[0].grad[0, :, 1, 1].abs().sum() > 0 and kernels[0].grad[1].abs().sum() == 0
    assert feats.grad[0].abs().sum() > 0 and cate[0].grad.abs().sum() > 0
    none = solov2_losses(cate, kernels, feats, [torch.full((2, 16), 3)],
                         [torch.full((2, 16), -1)], gt, 3)  # fmt: skip
    assert none["loss_ins"].item() == 0.0 and none["loss_ins"].requires_grad
    assert none["loss_cate"].item() > 0


def test_loss_upsamples_logits_to_finer_targets():
    """Targets at twice the mask features' resolution (DICE_STRIDE 2): the Dice loss is taken
    on the bilinearly upsampled logits, computed here pixel by pixel with align_corners=False."""
    torch.manual_seed(0)
    kernels = [torch.randn(1, 3, 2, 2)]
    feats = torch.randn(1, 3, 4, 4)
    assigned = [torch.tensor([[-1, -1, 0, -1]])]  # cell (1, 0) is positive
    labels = [torch.tensor([[2, 2, 0, 2]])]
    gt = [torch.zeros(1, 8, 8)]
    gt[0][0, 3:6, 2:5] = 1
    loss = solov2_losses([torch.zeros(1, 2, 2, 2)], kernels, feats, labels, assigned, gt, 2)
    coarse = (kernels[0][0, :, 1, 0] @ feats[0].reshape(3, -1)).reshape(4, 4)
    fine = torch.empty(8, 8)
    for y in range(8):
        for x in range(8):  # source coordinate (i + 0.5) / 2 - 0.5, clamped at the border
            sy, sx = max((y + 0.5) / 2 - 0.5, 0.0), max((x + 0.5) / 2 - 0.5, 0.0)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, 3), min(x0 + 1, 3)
            wy, wx = sy - y0, sx - x0
            top = coarse[y0, x0] * (1 - wx) + coarse[y0, x1] * wx
            bottom = coarse[y1, x0] * (1 - wx) + coarse[y1, x1] * wx
            fine[y, x] = top * (1 - wy) + bottom * wy
    expected = 3 * dice_loss(fine.sigmoid()[None], gt[0]).item()
    assert loss["loss_ins"].item() == pytest.approx(expected, rel=1e-5)


def test_inference_single_end_to_end():
    """One confident cell whose kernel draws a square: one mask, its box, original size."""
    feats = torch.zeros(2, 8, 8)
    feats[0, 2:6, 1:5] = 1.0  # channel 0 lights the square
    feats[1] = 1.0  # channel 1: bias
    kernels = torch.tensor([[20.0, -10.0], [0.0, -10.0]])
    cate = torch.tensor([[0.0, 0.9], [0.8, 0.0]])  # cell 1's mask would be empty: dropped
    out = solov2_inference_single(cate, kernels, torch.tensor([8.0, 8.0]), feats, (32, 32),
                                  (32, 24), (64, 48))  # fmt: skip
    assert len(out) == 1 and out.pred_classes.tolist() == [1]
    assert out.image_size == (64, 48) and out.pred_masks.shape == (1, 64, 48)
    # maskness = mean probability sigmoid(10) inside the mask
    assert out.scores.item() == pytest.approx(0.9 * torch.sigmoid(torch.tensor(10.0)).item())
    box = out.pred_boxes.tensor[0].tolist()
    assert box == masks_to_boxes(out.pred_masks).tensor[0].tolist()
    # the square covers input pixels x 4..20, y 8..24, i.e. x 8..40, y 16..48 at 2x
    assert box == pytest.approx([8, 16, 40, 48], abs=3)


def test_small_mask_rule_counts_cells_or_pixels():
    """A mask of 2 x 2 mask-feature cells at a stride-8 level: 4 cells (AdelaiDet's "cells"
    rule: dropped, 4 <= 8) but 64 input pixels at stride 4 ("pixels": kept, 64 > 8)."""
    feats = torch.zeros(2, 8, 8)
    feats[0, 3:5, 3:5] = 1.0
    feats[1] = 1.0
    kernels = torch.tensor([[20.0, -10.0]])
    cate = torch.tensor([[0.9]])
    args = (cate, kernels, torch.tensor([8.0]), feats, (32, 32), (32, 32), (32, 32))
    assert len(solov2_inference_single(*args)) == 0  # default: AdelaiDet's rule
    assert len(solov2_inference_single(*args, min_mask_area="cells")) == 0
    kept = solov2_inference_single(*args, min_mask_area="pixels")
    assert len(kept) == 1 and kept.scores.item() == pytest.approx(0.9, abs=1e-4)


def test_mask_upsample_probs_or_logits():
    """Cells with logits -10 | 1 side by side, upsampled 4x along x: with bilinear weight w
    on the -10 cell, the logit 1 - 11 w is > 0 for w < 1/11, the probability
    w sigmoid(-10) + (1 - w) sigmoid(1) is > 0.5 for w < 0.316; so the pixel at w = 0.125 is
    in the mask with "probs" (AdelaiDet) only."""
    logits = torch.tensor([[[-10.0, 1.0]]])  # (M=1, h=1, w=2)
    probs = _masks_at_output(logits, (1, 8), (1, 8), (1, 8), 0.5, "probs")
    by_logits = _masks_at_output(logits, (1, 8), (1, 8), (1, 8), 0.5, "logits")
    # bilinear x4, align_corners=False: output x samples input at (x + 0.5) / 4 - 0.5, so
    # x = 0..7 -> weights on the second cell 0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1
    w1 = torch.tensor([0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1])
    expect_probs = (1 - w1) * torch.sigmoid(torch.tensor(-10.0)) + w1 * torch.sigmoid(
        torch.tensor(1.0)
    ) > 0.5
    expect_logits = (1 - w1) * -10 + w1 * 1 > 0
    assert probs[0, 0].tolist() == expect_probs.tolist()
    assert by_logits[0, 0].tolist() == expect_logits.tolist()
    assert probs[0, 0].tolist() == [False] * 5 + [True] * 3
    assert by_logits[0, 0].tolist() == [False] * 6 + [True] * 2
