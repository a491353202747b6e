"""BlendMask's top layer: per location, K attention maps of M x M from the FCOS box tower."""

from typing import List

import torch
from detectron2.config import configurable
from torch import nn

__all__ = ["TopLayer"]


class TopLayer(nn.Module):
    """
    A 3x3 conv shared across levels on the box tower's features, giving at each location
    the K x M x M attention logits of the instance detected there (softmax over K comes in
    the blender, after upsampling). Weights N(0, 0.01), bias 0.
    """

    @configurable
    def __init__(self, *, in_channels: int, num_bases: int, attn_size: int):
        """
        Args:
            in_channels: channels of the box tower.
            num_bases: K.
            attn_size: M.
        """
        super().__init__()
        self.num_bases = num_bases
        self.attn_size = attn_size
        self.conv = nn.Conv2d(in_channels, num_bases * attn_size * attn_size, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.constant_(self.conv.bias, 0)

    @classmethod
    def from_config(cls, cfg, in_channels):
        return {
            "in_channels": in_channels,
            "num_bases": cfg.MODEL.BASIS_MODULE.NUM_BASES,
            "attn_size": cfg.MODEL.BLENDMASK.ATTN_SIZE,
        }

    @property
    def attn_len(self):
        """K * M * M, the channels per location."""
        return self.conv.out_channels

    def forward(self, box_feats: List[torch.Tensor]):
        """
        Args:
            box_feats: per level (N, C, Hi, Wi).
        Returns:
            per level (N, K*M*M, Hi, Wi); channel k*M*M + y*M + x is attention map k at (y, x).
        """
        return [self.conv(x) for x in box_feats]
