"""Contextual basis masks (CBM)."""
from typing import List

from detectron2.config import configurable
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BasisModule"]


class BasisModule(nn.Module):
    """
    Basis masks from FPN-level features: the coarser levels upsampled bilinearly to the
    finest and concatenated with it, a 3x3 conv + ReLU, a 1x1 conv to m channels, then
    bilinear upsampling by `upsample`. With one input level this is the YOLACT-like basis.
    """

    @configurable
    def __init__(self, *, in_channels: int, num_levels: int, conv_dim: int, num_basis: int,
                 upsample: int):
        """
        Args:
            in_channels: channels of each input level.
            num_levels: number of input levels (1 = P3 only, 3 = CBM on P3-P5).
            conv_dim: channels of the 3x3 conv.
            num_basis: m, the number of basis masks.
            upsample: bilinear upsampling factor of the output.
        """
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels * num_levels, conv_dim, 3, padding=1)
        self.out = nn.Conv2d(conv_dim, num_basis, 1)
        for layer in (self.conv, self.out):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, in_channels):
        s = cfg.MODEL.SIPMASK
        return {
            "in_channels": in_channels,
            "num_levels": len(s.BASIS_IN_FEATURES),
            "conv_dim": s.BASIS_CONV_DIM,
            "num_basis": s.NUM_BASIS,
            "upsample": s.BASIS_UPSAMPLE,
        }

    def forward(self, features: List):
        """
        Args:
            features: list of (N, C, Hi, Wi), finest first.
        Returns:
            (N, m, H0 * upsample, W0 * upsample) basis masks.
        """
        size = features[0].shape[-2:]
        x = [features[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]
        ]
        x = self.out(F.relu(self.conv(x[0] if len(x) == 1 else torch.cat(x, dim=1))))
        return F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
