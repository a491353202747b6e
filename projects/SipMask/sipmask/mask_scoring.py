"""SipMask++'s mask scoring: a small conv net predicts each mask's IoU with its ground truth;
at inference the detection score is multiplied by it (as YOLACT++ and the official code)."""
from typing import Sequence

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F

from cxr_d2.errors import ConfigError
from cxr_d2.layers import conv_block

__all__ = ["MaskIoUHead", "mask_iou_targets", "mask_iou_loss"]


class MaskIoUHead(nn.Module):
    """
    Input: a predicted mask (SMP probabilities at basis resolution, zero outside its box) as a
    one-channel image; 3x3 stride-2 convs + ReLU, a 1x1 conv to one IoU per class, ReLU, a
    global max pool; the output is the channel of the predicted class.
    """

    @configurable
    def __init__(self, *, num_classes: int, conv_dims: Sequence[int] = (16, 16, 16, 32, 64, 128),
                 padding: int = 0):
        """
        Args:
            num_classes: foreground classes (one IoU output each).
            conv_dims: output channels of the stride-2 convs.
            padding: their zero padding (official: 0; MODEL.SIPMASK.MASK_SCORING.PADDING).
        """
        super().__init__()
        layers, in_ch = [], 1
        for dim in conv_dims:
            layers += conv_block(in_ch, dim, 3, stride=2, padding=padding, init="kaiming",
                                 as_layers=True)  # fmt: skip
            in_ch = dim
        self.padding = padding
        # the smallest map the unpadded convs take: each needs >= 3 pixels
        self.min_size = 1
        for _ in conv_dims:
            self.min_size = 2 * self.min_size + 1 if padding == 0 else self.min_size
        self.convs = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(in_ch, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    @classmethod
    def from_config(cls, cfg, num_classes):
        m = cfg.MODEL.SIPMASK.MASK_SCORING
        return {"num_classes": num_classes, "conv_dims": tuple(m.CONV_DIMS),
                "padding": m.PADDING}

    def forward(self, masks, classes):
        """
        Args:
            masks: (P, H, W) mask probabilities (the caller detaches them in training).
            classes: (P,) class index of each mask.
        Returns:
            (P,) predicted mask IoU, >= 0.
        """
        if len(masks) == 0:
            return masks.new_zeros((0,))
        if min(masks.shape[-2:]) < self.min_size:
            raise ConfigError(
                f"SipMask++ mask scoring got {tuple(masks.shape[-2:])} px masks; its unpadded "
                f"convs need at least {self.min_size} px (inputs of {2 * self.min_size} px at "
                "basis stride 2): use larger inputs or MODEL.SIPMASK.MASK_SCORING.PADDING 1"
            )
        x = F.relu(self.predictor(self.convs(masks[:, None])))  # (P, K, h, w)
        x = x.flatten(2).max(dim=2).values  # (P, K)
        return x[torch.arange(x.shape[0], device=x.device), classes]


def mask_iou_targets(mask_probs, gt_masks, threshold):
    """
    Args:
        mask_probs: (P, H, W) predicted probabilities; a pixel is foreground when > threshold.
        gt_masks: (P, H, W) {0, 1} ground truth of each prediction's matched instance.
        threshold: mask threshold (as at inference).
    Returns:
        (P,) IoU of the thresholded masks with their ground truths (0 when both are empty).
    """
    pred = (mask_probs > threshold).to(gt_masks.dtype)
    inter = (pred * gt_masks).sum(dim=(1, 2))
    union = pred.sum(dim=(1, 2)) + gt_masks.sum(dim=(1, 2)) - inter
    return inter / union.clamp(min=1)


def mask_iou_loss(pred_iou, target_iou, gt_areas, min_iou=0.1, min_gt_area=100.0):
    """
    Squared error of the predicted IoUs, averaged over the predictions kept for training: those
    whose target IoU exceeds `min_iou` and whose ground truth covers at least `min_gt_area`
    pixels (official code: 0.1 and 10 x 10 basis pixels).

    Args:
        pred_iou, target_iou: (P,); gt_areas: (P,) ground-truth pixels at basis resolution.
    Returns:
        scalar; 0 (with a graph) when none is kept.
    """
    keep = ((target_iou > min_iou) & (gt_areas >= min_gt_area)).to(pred_iou.dtype)
    return (keep * (pred_iou - target_iou) ** 2).sum() / keep.sum().clamp(min=1)
