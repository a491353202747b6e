"""YOLOv3's prediction grid, box decoding and target assignment (scale, anchor and cell)."""

import math

import torch
from detectron2.structures import Boxes, pairwise_iou

__all__ = [
    "yolo_grid",
    "decode_yolo_boxes",
    "wh_iou",
    "assign_yolo_targets",
    "build_yolo_targets",
    "ignore_mask",
]

# Largest tw/th decoded (exp(tw) <= 1000/16, as Detectron2's Box2BoxTransform scale clamp).
_SCALE_CLAMP = math.log(1000.0 / 16)


def yolo_grid(grid_sizes, strides, anchors, device=None):
    """
    One row per prediction, in the head's flattened order (level, then H, W, anchor).

    Args:
        grid_sizes (list[(H, W)]), strides (list[int]): per level.
        anchors (Tensor[L, A, 2]): (w, h) in input pixels.

    Returns:
        Tensor[R, 5]: (column j, row i, anchor w, anchor h, stride).
    """
    rows = []
    for (h, w), stride, level_anchors in zip(grid_sizes, strides, anchors):
        a = len(level_anchors)
        i, j = torch.meshgrid(
            torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
        )
        ij = torch.stack([j, i], dim=-1).view(h, w, 1, 2).expand(h, w, a, 2).float()
        wh = level_anchors.to(device).view(1, 1, a, 2).expand(h, w, a, 2).float()
        s = torch.full((h, w, a, 1), float(stride), device=device)
        rows.append(torch.cat([ij, wh, s], dim=-1).reshape(-1, 5))
    return torch.cat(rows)


def decode_yolo_boxes(raw, grid):
    """
    Args:
        raw (Tensor[..., R, >=4]): (tx, ty, tw, th, ...) logits.
        grid (Tensor[R, 5]): from `yolo_grid`.

    Returns:
        Tensor[..., R, 4]: XYXY_ABS boxes, centre ((j + sigmoid(tx)) * stride, ...), size
        (anchor_w * exp(tw), anchor_h * exp(th)).
    """
    stride = grid[:, 4]
    cx = (grid[:, 0] + raw[..., 0].sigmoid()) * stride
    cy = (grid[:, 1] + raw[..., 1].sigmoid()) * stride
    w = grid[:, 2] * raw[..., 2].clamp(max=_SCALE_CLAMP).exp()
    h = grid[:, 3] * raw[..., 3].clamp(max=_SCALE_CLAMP).exp()
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def wh_iou(wh1, wh2):
    """IoU of boxes with a common centre: (G, 2) x (M, 2) -> (G, M)."""
    inter = torch.min(wh1[:, None, 0], wh2[None, :, 0]) * torch.min(
        wh1[:, None, 1], wh2[None, :, 1]
    )
    union = (wh1[:, 0] * wh1[:, 1])[:, None] + (wh2[:, 0] * wh2[:, 1])[None, :] - inter
    return inter / union


@torch.no_grad()
def assign_yolo_targets(gt_boxes: Boxes, grid_sizes, strides, anchors):
    """
    YOLOv3's assignment: each ground-truth box goes to the one anchor (of all levels) whose
    shape overlaps it best (IoU of the (w, h) pairs at a common centre), on that anchor's
    level, in the cell holding the box centre. When two boxes land on the same (level, cell,
    anchor) the later one wins; the count of such collisions is returned.

    Args:
        gt_boxes (Boxes): G boxes, XYXY_ABS in input pixels.
        grid_sizes (list[(H, W)]), strides (list[int]): per level.
        anchors (Tensor[L, A, 2]): (w, h) per level and anchor.

    Returns:
        index (Tensor[G] int64): the prediction row (in `yolo_grid` order) of each box.
        level, anchor (Tensor[G] int64): its level and anchor within the level.
        collisions (int): boxes overwritten by a later box on the same prediction.
    """
    boxes = gt_boxes.tensor
    num_levels, num_anchors = anchors.shape[:2]
    wh = boxes[:, 2:] - boxes[:, :2]
    best = wh_iou(wh, anchors.reshape(-1, 2).to(wh)).argmax(dim=1)  # (G,)
    level, anchor = best // num_anchors, best % num_anchors
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    level_sizes = [h * w * num_anchors for h, w in grid_sizes]
    offsets = torch.tensor([0] + level_sizes[:-1], device=boxes.device).cumsum(0)
    hs = torch.tensor([h for h, _ in grid_sizes], device=boxes.device)
    ws = torch.tensor([w for _, w in grid_sizes], device=boxes.device)
    stride = torch.tensor(strides, device=boxes.device, dtype=boxes.dtype)[level]
    j = torch.min((centres[:, 0] / stride).floor().long().clamp(min=0), ws[level] - 1)
    i = torch.min((centres[:, 1] / stride).floor().long().clamp(min=0), hs[level] - 1)
    index = offsets[level] + (i * ws[level] + j) * num_anchors + anchor
    collisions = len(index) - len(torch.unique(index))
    return index, level, anchor, collisions


@torch.no_grad()
def build_yolo_targets(
    gt_boxes: Boxes, gt_classes, grid, grid_sizes, strides, anchors, num_classes, image_size
):
    """
    Dense targets of one image.

    Args:
        gt_boxes (Boxes), gt_classes (Tensor[G]): the image's ground truth.
        grid (Tensor[R, 5]): `yolo_grid`.
        image_size ((h, w)): input size, for the box-loss weight 2 - w*h / (H*W).

    Returns:
        dict with
            positive (Tensor[R] bool),
            gt_index (Tensor[R] int64): ground-truth index per prediction (-1: none),
            box_target (Tensor[R, 4]): (tx, ty) in [0, 1] within the cell and (tw, th) =
                log(size / anchor) where positive,
            box_weight (Tensor[R]): 2 - w*h / image area where positive,
            class_target (Tensor[R, K]): one-hot where positive,
            collisions (int).
    """
    num = grid.shape[0]
    device = grid.device
    gt_index = torch.full((num,), -1, dtype=torch.int64, device=device)
    out = {
        "box_target": torch.zeros(num, 4, device=device),
        "box_weight": torch.zeros(num, device=device),
        "class_target": torch.zeros(num, num_classes, device=device),
        "collisions": 0,
    }
    if len(gt_boxes) > 0:
        index, _, _, out["collisions"] = assign_yolo_targets(gt_boxes, grid_sizes, strides, anchors)
        order = torch.arange(len(index), device=device)
        gt_index.scatter_reduce_(0, index, order, reduce="amax")  # the later box wins
        pos = gt_index >= 0
        g = gt_index[pos]
        boxes = gt_boxes.tensor[g]
        cell = grid[pos]
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        out["box_target"][pos] = torch.cat(
            [(centre / cell[:, 4:5] - cell[:, :2]).clamp(0, 1), torch.log(wh / cell[:, 2:4])], dim=1
        )
        out["box_weight"][pos] = 2 - wh[:, 0] * wh[:, 1] / (image_size[0] * image_size[1])
        out["class_target"][pos, gt_classes[g]] = 1.0
    out["gt_index"] = gt_index
    out["positive"] = gt_index >= 0
    return out


def ignore_mask(pred_boxes, gt_boxes: Boxes, ignore_thresh):
    """
    Args:
        pred_boxes (Tensor[R, 4]): decoded predictions of one image.
        gt_boxes (Boxes): its ground truth.

    Returns:
        Tensor[R] bool: predictions overlapping some ground-truth box by more than
        `ignore_thresh` (not penalised as background).
    """
    if len(gt_boxes) == 0:
        return torch.zeros(len(pred_boxes), dtype=torch.bool, device=pred_boxes.device)
    return pairwise_iou(Boxes(pred_boxes), gt_boxes).max(dim=1).values > ignore_thresh
