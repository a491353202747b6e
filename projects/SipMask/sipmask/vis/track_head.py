"""SipMask-VIS's tracking branch: a tracking feature map fused over levels, one vector per box."""

from typing import List

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn
from torch.nn import functional as F

from cxr_d2.errors import ConfigError
from cxr_d2.layers import conv_block

__all__ = ["TrackHead", "track_vectors"]


class TrackHead(nn.Module):
    """
    The official SipMask-VIS `track_convs` + `fovea_track`: `num_convs` 3x3 conv + norm + ReLU
    blocks, shared over levels, run on each input FPN level in parallel to the classification
    and regression towers; each level's output is upsampled bilinearly to the first (finest)
    level and the levels are concatenated, as the basis masks are fused; a 1x1 conv maps them
    to `embed_dim` channels, the tracking feature map (no activation).
    """

    @configurable
    def __init__(
        self, *, in_channels: int, num_levels: int, num_convs: int, embed_dim: int, norm: str = "GN"
    ):
        """
        Args:
            in_channels: channels of each FPN level (the convs keep them).
            num_levels: number of input levels (official: 3, P3-P5).
            num_convs: the conv blocks shared over levels (official: 2).
            embed_dim: channels of the tracking vectors (official: 512).
            norm: norm of the conv blocks (official: "GN", GroupNorm(32)).
        """
        super().__init__()
        self.convs = nn.Sequential(*[
            conv_block(in_channels, in_channels, 3, norm=norm, init="normal")
            for _ in range(num_convs)
        ])  # fmt: skip
        # PyTorch's default init, as the official fovea_track (left out of init_weights)
        self.fuse = nn.Conv2d(in_channels * num_levels, embed_dim, 1)

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        t = cfg.MODEL.SIPMASK.TRACK
        if t.NUM_CONVS < 0 or t.EMBED_DIM < 1:
            raise ConfigError(
                f"MODEL.SIPMASK.TRACK.NUM_CONVS {t.NUM_CONVS} / EMBED_DIM {t.EMBED_DIM}: give "
                "NUM_CONVS >= 0 and EMBED_DIM >= 1 (official: 2 and 512)"
            )
        return {
            "in_channels": input_shape[0].channels,
            "num_levels": len(input_shape),
            "num_convs": t.NUM_CONVS,
            "embed_dim": t.EMBED_DIM,
            "norm": t.NORM,
        }

    def forward(self, features: List[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            features: the input levels, finest first, each (N, C, Hi, Wi).
        Returns:
            (N, embed_dim, H0, W0): the tracking feature map at the first level's stride.
        """
        size = features[0].shape[-2:]
        fused = []
        for k, x in enumerate(features):
            x = self.convs(x)
            if k:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            fused.append(x)
        return self.fuse(torch.cat(fused, dim=1))


def track_vectors(track_map: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
    """
    One tracking vector per box: the map's value at the cell holding the box centre (the
    official `extract_box_feature_center_single`: floor(centre / stride)), the cell clamped
    into the map for a centre outside it.

    Args:
        track_map: (E, H, W) one image's tracking feature map.
        boxes: (R, 4) XYXY in input pixels.
        stride: input pixels per map cell.
    Returns:
        (R, E).
    """
    h, w = track_map.shape[-2:]
    cx = torch.floor((boxes[:, 0] + boxes[:, 2]) / 2 / stride).long().clamp(0, w - 1)
    cy = torch.floor((boxes[:, 1] + boxes[:, 3]) / 2 / stride).long().clamp(0, h - 1)
    return track_map[:, cy, cx].t()
