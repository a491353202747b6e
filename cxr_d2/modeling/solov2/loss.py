"""SOLOv2's losses: Dice loss on the dynamic-conv masks, focal loss on the category grids."""

import torch
import torch.nn.functional as F
from detectron2.layers import cat
from fvcore.nn import sigmoid_focal_loss

from .layers import dynamic_conv

__all__ = ["dice_loss", "upsample_logits", "solov2_losses"]


def dice_loss(probs, targets, eps=1e-3):
    """
    Dice loss of SOLO: 1 - 2 sum(p t) / (sum(p^2) + eps + sum(t^2) + eps), per mask.

    Args:
        probs (Tensor[M, H, W]): predicted probabilities (after sigmoid).
        targets (Tensor[M, H, W]): 0/1 targets.

    Returns:
        Tensor[M]: the loss of each mask.
    """
    p = probs.flatten(1)
    t = targets.flatten(1).to(p.dtype)
    return 1 - 2 * (p * t).sum(1) / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)


def upsample_logits(logits, size):
    """(M, h, w) mask logits -> (M, *size), bilinear (align_corners=False); as they are if
    already of that size."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def _positive_masks(kernel_preds, mask_features, assigned, gt_masks):
    """Mask logits of every positive cell, upsampled to its target's size, and the targets:
    (P, H_t, W_t) each."""
    logits, targets = [], []
    for kernels, asg in zip(kernel_preds, assigned):  # per level: (N, E, S, S), (N, S*S)
        for n in range(kernels.shape[0]):
            pos = asg[n] >= 0
            if not pos.any():
                continue
            k = kernels[n].flatten(1).t()[pos]  # (P_n, E)
            target = gt_masks[n][asg[n][pos]]  # (P_n, H_t, W_t)
            logits.append(upsample_logits(dynamic_conv(k, mask_features[n]), target.shape[-2:]))
            targets.append(target)
    return logits, targets


def solov2_losses(cate_preds, kernel_preds, mask_features, labels, assigned, gt_masks,
                  num_classes, focal_alpha=0.25, focal_gamma=2.0, focal_weight=1.0,
                  dice_weight=3.0):  # fmt: skip
    """
    Args:
        cate_preds (list[Tensor[N, K, S, S]]), kernel_preds (list[Tensor[N, E, S, S]]): head.
        mask_features (Tensor[N, E, H, W]): the mask feature branch's output.
        labels, assigned, gt_masks: `solov2_targets` (gt_masks at the Dice loss's stride, a
            divisor of the mask features'; the mask logits are upsampled to it).
        num_classes (int): K.

    Returns:
        dict: "loss_ins" = dice_weight * mean Dice loss over the positive cells (0 without
        any), "loss_cate" = focal_weight * sigmoid focal loss summed over all cells / (P + 1).
        Both keep the graph of every prediction, so images without instances train.
    """
    logits, targets = _positive_masks(kernel_preds, mask_features, assigned, gt_masks)
    num_pos = sum(len(x) for x in logits)
    # zero terms tie every output into the graph (unused parameters break DDP)
    zero = mask_features.sum() * 0 + sum(k.sum() for k in kernel_preds) * 0
    if num_pos:
        loss_ins = dice_loss(cat(logits).sigmoid(), cat(targets)).mean() * dice_weight + zero
    else:
        loss_ins = zero
    flat_logits = cat([p.permute(0, 2, 3, 1).reshape(-1, num_classes) for p in cate_preds])
    flat_labels = cat([x.reshape(-1) for x in labels])
    one_hot = torch.zeros_like(flat_logits)
    fg = flat_labels < num_classes
    one_hot[fg.nonzero().flatten(), flat_labels[fg]] = 1.0
    loss_cate = sigmoid_focal_loss(
        flat_logits, one_hot, alpha=focal_alpha, gamma=focal_gamma, reduction="sum"
    ) / (num_pos + 1)
    return {"loss_ins": loss_ins, "loss_cate": loss_cate * focal_weight}
