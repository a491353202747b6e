"""Contextual basis masks (CBM)."""
from typing import List

from detectron2.config import configurable
import torch
from torch import nn
from torch.nn import functional as F

from cxr_d2.errors import ConfigError

__all__ = ["BasisModule"]


class BasisModule(nn.Module):
    """
    Basis masks from FPN-level features: the coarser levels upsampled bilinearly to the
    finest and concatenated with it, then (order "1x1-3x3", official) a 1x1 conv to
    `conv_dim` + ReLU and a 3x3 conv to m + ReLU, or (order "3x3-1x1") a 3x3 conv + ReLU and a
    1x1 conv to m; then bilinear upsampling by `upsample`. With one input level this is the
    YOLACT-like basis.
    """

    ORDERS = ("1x1-3x3", "3x3-1x1")

    @configurable
    def __init__(self, *, in_channels: int, num_levels: int, conv_dim: int, num_basis: int,
                 upsample: int, order: str = "1x1-3x3"):
        """
        Args:
            in_channels: channels of each input level.
            num_levels: number of input levels (1 = P3 only, 3 = CBM on P3-P5).
            conv_dim: channels between the two convs.
            num_basis: m, the number of basis masks.
            upsample: bilinear upsampling factor of the output.
            order: kernel sizes of `conv` then `out`, see above.
        """
        super().__init__()
        if order not in self.ORDERS:
            raise ConfigError(f"MODEL.SIPMASK.BASIS_ORDER is {order!r}; use one of {self.ORDERS}")
        self.upsample = upsample
        self.final_relu = order == "1x1-3x3"
        k1, k2 = (1, 3) if self.final_relu else (3, 1)
        self.conv = nn.Conv2d(in_channels * num_levels, conv_dim, k1, padding=k1 // 2)
        self.out = nn.Conv2d(conv_dim, num_basis, k2, padding=k2 // 2)
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
            "order": s.BASIS_ORDER,
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
        if self.final_relu:
            x = F.relu(x)
        return F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)
