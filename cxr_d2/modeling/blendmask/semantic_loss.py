"""The bottom module's auxiliary semantic loss, its targets drawn from the instance masks."""

import torch
from detectron2.structures import BitMasks, PolygonMasks
from torch.nn import functional as F

__all__ = ["semantic_targets", "semantic_loss"]


def _bitmasks(gt_masks, height, width):
    """(G, height, width) bool of BitMasks or PolygonMasks."""
    if isinstance(gt_masks, PolygonMasks):
        gt_masks = BitMasks.from_polygon_masks(gt_masks, height, width)
    return gt_masks.tensor.bool()


def semantic_targets(gt_instances, out_size, stride):
    """
    Per-pixel class labels at the semantic logits' resolution.

    Each image's instances are drawn at input resolution, largest area first (so a small
    lesion inside a large one keeps its label), as class + 1 (0 = background); the label of
    each output cell is that of the input pixel at the cell's centre, (stride * (i + 1/2)).

    Args:
        gt_instances: per image Instances with gt_classes (G,) and gt_masks (BitMasks
            (G, h, w) at the image's input size, or PolygonMasks in input pixels).
        out_size: (Hs, Ws) of the logits.
        stride: input pixels per logit cell.
    Returns:
        (N, Hs, Ws) long in [0, num_classes].
    """
    hs, ws = out_size
    device = gt_instances[0].gt_classes.device
    ys = torch.arange(hs, device=device) * stride + stride // 2
    xs = torch.arange(ws, device=device) * stride + stride // 2
    out = torch.zeros((len(gt_instances), hs, ws), dtype=torch.long, device=device)
    for i, gt in enumerate(gt_instances):
        if len(gt) == 0:
            continue
        h, w = gt.image_size
        masks = _bitmasks(gt.gt_masks, h, w)
        inside_y, inside_x = ys < masks.shape[1], xs < masks.shape[2]
        cells = masks[:, ys[inside_y]][:, :, xs[inside_x]]  # (G, hs', ws')
        labels = torch.zeros(cells.shape[1:], dtype=torch.long, device=device)
        for g in masks.flatten(1).sum(1).argsort(descending=True).tolist():
            labels[cells[g]] = int(gt.gt_classes[g]) + 1
        out[i, : labels.shape[0], : labels.shape[1]] = labels
    return out


def semantic_loss(sem_logits, gt_instances, stride):
    """
    Args:
        sem_logits: (N, num_classes + 1, Hs, Ws).
        gt_instances: as :func:`semantic_targets`.
        stride: input pixels per logit cell.
    Returns:
        scalar mean cross-entropy over all cells (background included, as AdelaiDet).
    """
    targets = semantic_targets(gt_instances, sem_logits.shape[-2:], stride)
    return F.cross_entropy(sem_logits, targets)
