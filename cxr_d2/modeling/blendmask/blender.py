"""
The blender: RoI-pooled bases of each box, weighted by its attentions (upsampled, softmax over
K) and summed into one mask logit map per instance; its loss against the cropped GT masks.
"""

from typing import List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn
from torch.nn import functional as F

from ...errors import ConfigError

__all__ = ["Blender", "blend", "blender_loss", "mask_targets"]

_POOLER_TYPES = ("ROIAlignV2", "ROIAlign", "ROIPool")  # torchvision's ops (no detectron2._C)
_INTERP = ("bilinear", "nearest", "bicubic", "area", "nearest-exact")


def blend(rois, attentions, attn_size, top_interp="bilinear"):
    """
    Args:
        rois: (P, K, R, R) bases pooled to each instance's box.
        attentions: (P, K*M*M) attention logits, M = attn_size (layout of TopLayer).
        top_interp: F.interpolate mode from M x M to R x R (align_corners False).
    Returns:
        (P, R, R) mask logits: sum_k rois[:, k] * softmax_k(upsampled attentions)[:, k].
    """
    p, k, h, w = rois.shape
    attn = attentions.view(p, k, attn_size, attn_size)
    corners = {"align_corners": False} if top_interp in ("bilinear", "bicubic") else {}
    attn = F.interpolate(attn, size=(h, w), mode=top_interp, **corners).softmax(dim=1)
    return (rois * attn).sum(dim=1)


def mask_targets(gt_instances, resolution):
    """
    Each image's GT masks cropped to their GT boxes and resized (RoIAlign, aligned) to
    R x R, as Mask R-CNN's targets.

    Returns:
        (G, R, R) float in {0, 1}, G = all instances of all images, in order.
    """
    out = [
        gt.gt_masks.crop_and_resize(gt.gt_boxes.tensor, resolution).float()
        for gt in gt_instances
        if len(gt) > 0
    ]
    if not out:
        device = gt_instances[0].gt_boxes.device
        return torch.zeros((0, resolution, resolution), device=device)
    return cat(out).to(gt_instances[0].gt_boxes.device)


def blender_loss(mask_logits, targets, weights):
    """
    Args:
        mask_logits: (P, R, R) blended logits of P positive locations.
        targets: (P, R, R) their GT masks in {0, 1}.
        weights: (P,) the locations' centerness targets.
    Returns:
        scalar: per-location mean BCE, weighted by centerness and divided by its sum
        (AdelaiDet's normalisation).
    """
    bce = F.binary_cross_entropy_with_logits(mask_logits, targets, reduction="none")
    return (bce.mean(dim=(1, 2)) * weights).sum() / weights.sum().clamp(min=1e-6)


class Blender(nn.Module):
    """RoI pooling of the bases (Detectron2's ROIPooler, torchvision's RoIAlign) and `blend`."""

    @configurable
    def __init__(
        self,
        *,
        attn_size: int,
        bottom_resolution: int = 56,
        pooler_type: str = "ROIAlignV2",
        pooler_scale: float = 0.25,
        sampling_ratio: int = 1,
        top_interp: str = "bilinear",
    ):
        """
        Args:
            attn_size: M.
            bottom_resolution: R.
            pooler_type: "ROIAlignV2" (aligned), "ROIAlign" or "ROIPool".
            pooler_scale: 1 / the bases' stride.
            sampling_ratio: RoIAlign samples per bin side (0 = adaptive).
            top_interp: mode of the attentions' upsampling.
        """
        super().__init__()
        self.attn_size = attn_size
        self.resolution = bottom_resolution
        self.top_interp = top_interp
        self.pooler = ROIPooler(
            output_size=bottom_resolution,
            scales=(pooler_scale,),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
            canonical_level=2,
        )

    @classmethod
    def from_config(cls, cfg, bases_stride):
        m = cfg.MODEL.BLENDMASK
        if m.POOLER_TYPE not in _POOLER_TYPES:
            raise ConfigError(
                f"MODEL.BLENDMASK.POOLER_TYPE is {m.POOLER_TYPE!r}; use one of "
                f"{list(_POOLER_TYPES)}"
            )
        if len(m.POOLER_SCALES) != 1 or abs(m.POOLER_SCALES[0] * bases_stride - 1) > 1e-6:
            raise ConfigError(
                f"MODEL.BLENDMASK.POOLER_SCALES is {tuple(m.POOLER_SCALES)} but the bases are at "
                f"stride {bases_stride}; set POOLER_SCALES ({1 / bases_stride},)"
            )
        if m.TOP_INTERP not in _INTERP:
            raise ConfigError(
                f"MODEL.BLENDMASK.TOP_INTERP is {m.TOP_INTERP!r}; use one of {list(_INTERP)}"
            )
        if m.ATTN_SIZE < 1 or m.BOTTOM_RESOLUTION < 1:
            raise ConfigError(
                f"MODEL.BLENDMASK.ATTN_SIZE ({m.ATTN_SIZE}) and BOTTOM_RESOLUTION "
                f"({m.BOTTOM_RESOLUTION}) must be positive"
            )
        return {
            "attn_size": m.ATTN_SIZE,
            "bottom_resolution": m.BOTTOM_RESOLUTION,
            "pooler_type": m.POOLER_TYPE,
            "pooler_scale": m.POOLER_SCALES[0],
            "sampling_ratio": m.POOLER_SAMPLING_RATIO,
            "top_interp": m.TOP_INTERP,
        }

    def pool(self, bases, boxes: List[Boxes]):
        """
        Args:
            bases: (N, K, Hb, Wb).
            boxes: per image Boxes (XYXY, input pixels of the padded batch).
        Returns:
            (sum of boxes, K, R, R), images in order.
        """
        return self.pooler([bases], boxes)

    def blend(self, rois, attentions):
        """(P, K, R, R) pooled bases, (P, K*M*M) attentions -> (P, R, R) mask logits."""
        return blend(rois, attentions, self.attn_size, self.top_interp)

    def forward(self, bases, boxes: List[Boxes], attentions):
        """
        Args:
            bases: (N, K, Hb, Wb); boxes: per image Boxes (P in all);
            attentions: (P, K*M*M), in the boxes' order.
        Returns:
            (P, R, R) mask logits in each box's frame.
        """
        return self.blend(self.pool(bases, boxes), attentions)
