"""Building blocks of SOLOv2's branches: CoordConv coordinates, conv blocks, dynamic conv."""

import torch
import torch.nn.functional as F
from detectron2.layers import get_norm
from torch import nn

from ...layers import DeformConv, ModulatedDeformConv

__all__ = ["coord_features", "add_coords", "DeformConvBlock", "dynamic_conv"]


def coord_features(x):
    """
    CoordConv coordinates for a feature map.

    Args:
        x (Tensor[N, C, H, W]).

    Returns:
        Tensor[N, 2, H, W]: channel 0 the column's x, channel 1 the row's y, each running
        linearly from -1 (first column/row) to 1 (last), as AdelaiDet's.
    """
    n, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    y, x_ = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x_, y]).expand(n, -1, -1, -1)


def add_coords(x):
    """(N, C, H, W) -> (N, C + 2, H, W): `x` with its `coord_features` appended."""
    return torch.cat([x, coord_features(x)], dim=1)


class DeformConvBlock(nn.Module):
    """
    A 3x3 deformable conv (`cxr_d2.layers.DeformConv` / `ModulatedDeformConv`, on
    torchvision.ops.deform_conv2d) + norm + ReLU. The offsets (and, for DCNv2, the modulation)
    come from a plain 3x3 conv initialised to zero, so the block starts as a regular conv.
    """

    def __init__(self, in_channels, out_channels, norm="", modulated=False):
        super().__init__()
        self.modulated = modulated
        self.offset = nn.Conv2d(in_channels, (27 if modulated else 18), 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        conv = ModulatedDeformConv if modulated else DeformConv
        self.conv = conv(in_channels, out_channels, 3, padding=1, bias=modulated and not norm,
                         norm=get_norm(norm, out_channels), activation=F.relu)  # fmt: skip
        nn.init.normal_(self.conv.weight, std=0.01)

    def forward(self, x):
        """(N, C_in, H, W) -> (N, C_out, H, W)."""
        offset = self.offset(x)
        if self.modulated:
            return self.conv(x, offset[:, :18], offset[:, 18:].sigmoid())
        return self.conv(x, offset)


def dynamic_conv(kernels, mask_features):
    """
    SOLOv2's dynamic convolution: each predicted kernel, a 1x1 conv, applied to the unified
    mask features of its image.

    Args:
        kernels (Tensor[M, E]): M kernels of length E.
        mask_features (Tensor[E, H, W]): one image's mask features.

    Returns:
        Tensor[M, H, W]: mask logits.
    """
    e, h, w = mask_features.shape
    return (kernels @ mask_features.reshape(e, h * w)).reshape(-1, h, w)  # M = 0 works too
