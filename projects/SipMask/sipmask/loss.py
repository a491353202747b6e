"""SipMask's mask loss: BCE inside the predicted box, mask alignment weighting (WL)."""
import torch
from torch.nn import functional as F

from .smp import subregion_masks

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


def per_instance_mask_loss(basis, coefficients, boxes, targets, grid, return_probs=False):
    """
    Binary cross-entropy of SMP's masks against their targets, summed over the pixels inside
    each box (in basis pixels) and divided by their number.

    SMP's probability at a pixel inside the box is sigmoid(B x C_k) for the one sub-region k
    holding it, so the BCE is computed from that logit (`binary_cross_entropy_with_logits`):
    the same value as BCE on SMP's output, without its gradient vanishing where the sigmoid
    saturates.

    Args:
        basis: (m, H, W); coefficients: (P, rows*cols, m); boxes: (P, 4) in basis pixels
            (detached: the mask loss does not move the boxes); targets: (P, H, W) in {0, 1}.
        return_probs: also return SMP's masks.
    Returns:
        (P,) loss per instance; 0 for a box covering no pixel centre. With `return_probs`,
        also the (P, H, W) masks (:func:`spatial_mask_prediction`).
    """
    num, regions, m = coefficients.shape
    if regions != grid[0] * grid[1] or basis.shape[0] != m:
        raise ValueError(
            f"per_instance_mask_loss: basis {tuple(basis.shape)} and coefficients "
            f"{tuple(coefficients.shape)} do not fit grid {grid}"
        )
    if num == 0:
        empty = basis.new_zeros((0, *basis.shape[-2:]))
        zero = basis.sum() * 0 + coefficients.sum() * 0
        return (zero.reshape(1)[:0], empty) if return_probs else zero.reshape(1)[:0]
    regions_in = subregion_masks(boxes, grid, *basis.shape[-2:]).to(basis.dtype)  # (P, K, H, W)
    logits = torch.einsum("pkm,mhw->pkhw", coefficients, basis)
    logit = (logits * regions_in).sum(dim=1)  # (P, H, W): the logit of each pixel's sub-region
    inside = regions_in.sum(dim=1)  # (P, H, W) 1 inside the box, 0 outside
    bce = F.binary_cross_entropy_with_logits(logit, targets, reduction="none")
    loss = (bce * inside).sum(dim=(1, 2)) / inside.sum(dim=(1, 2)).clamp(min=1)
    if not return_probs:
        return loss
    return loss, logit.sigmoid() * inside


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
