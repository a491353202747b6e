"""SipMask's mask loss: BCE inside the predicted box, mask alignment weighting (WL)."""
import torch
from torch.nn import functional as F

from .smp import spatial_mask_prediction, subregion_masks

__all__ = ["per_instance_mask_loss", "mask_alignment_weighted_loss", "gt_masks_at_basis"]


def gt_masks_at_basis(gt_masks, padded_size, stride):
    """
    Args:
        gt_masks: (G, h, w) bool masks of one image at input resolution (h, w <= padded_size).
        padded_size: (H, W) of the batched input, divisible by `stride`.
        stride: input pixels per basis pixel.
    Returns:
        (G, H / stride, W / stride) float {0, 1}: a basis pixel is foreground when at least
        half of its stride x stride input pixels are.
    """
    g, h, w = gt_masks.shape
    masks = gt_masks.new_zeros((g, padded_size[0], padded_size[1]), dtype=torch.float32)
    masks[:, :h, :w] = gt_masks.float()
    if g == 0 or stride == 1:
        return masks[:, :: stride, :: stride] if g == 0 else masks
    return (F.avg_pool2d(masks[:, None], stride)[:, 0] >= 0.5).float()


def per_instance_mask_loss(basis, coefficients, boxes, targets, grid):
    """
    Binary cross-entropy of SMP's masks against their targets, summed over the pixels inside
    each box (in basis pixels) and divided by their number.

    Args:
        basis: (m, H, W); coefficients: (P, rows*cols, m); boxes: (P, 4) in basis pixels
            (detached: the mask loss does not move the boxes); targets: (P, H, W) in {0, 1}.
    Returns:
        (P,) loss per instance; 0 for a box covering no pixel centre.
    """
    probs = spatial_mask_prediction(basis, coefficients, boxes, grid)
    inside = subregion_masks(boxes, grid, *basis.shape[-2:]).any(dim=1).to(probs.dtype)
    eps = 1e-6
    bce = F.binary_cross_entropy(probs.clamp(eps, 1 - eps), targets, reduction="none")
    return (bce * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2)).clamp(min=1)


def mask_alignment_weighted_loss(losses, ious, scores, weighted=True):
    """
    SipMask's mask alignment weighting: alpha_j = IoU(pred box j, its gt) x score s_j,
    normalised to mean 1 over the P boxes (the official code), then the weighted losses are
    averaged over the boxes: sum_j alpha_j L_j / sum_j alpha_j. Unweighted: mean_j L_j.

    Args:
        losses: (P,) per-instance mask losses.
        ious, scores: (P,) IoU with the matched gt box and classification score (of the gt
            class), both detached.
        weighted: apply the weighting (False = plain BCE, the baseline).
    Returns:
        scalar loss; 0 (with a graph) when P == 0.
    """
    if losses.numel() == 0:
        return losses.sum()
    if not weighted:
        return losses.mean()
    alpha = ious * scores
    alpha = alpha / alpha.mean().clamp(min=1e-6)
    return (alpha * losses).mean()
