"""SOLOv2's instance head: the category branch and the kernel branch on S x S grids."""

from typing import List

import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ...layers import conv_block, prior_bias
from .layers import DeformConvBlock, add_coords

__all__ = ["SOLOv2InstanceHead", "resample_to_strides"]


def resample_to_strides(features, strides, padded_size):
    """
    Resample FPN features to the instance strides (AdelaiDet: P2 halved, P6 doubled).

    Args:
        features (list[Tensor[N, C, Hi, Wi]]).
        strides (list[int]): target stride of each, in input pixels.
        padded_size (tuple[int, int]): (H, W) of the padded input batch.

    Returns:
        list[Tensor[N, C, H // s, W // s]] (bilinear, align_corners=False; unchanged where
        the size already matches).
    """
    out = []
    for x, s in zip(features, strides):
        size = (padded_size[0] // s, padded_size[1] // s)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        out.append(x)
    return out


def _tower(in_channels, channels, num_convs, norm, dcn_type):
    """`num_convs` conv blocks; the last one deformable when `dcn_type` is set."""
    layers = []
    for i in range(num_convs):
        c_in = in_channels if i == 0 else channels
        if dcn_type and i == num_convs - 1:
            layers.append(DeformConvBlock(c_in, channels, norm, modulated=dcn_type == "DCNv2"))
        else:
            layers.append(conv_block(c_in, channels, norm=norm))
    return nn.Sequential(*layers)


class SOLOv2InstanceHead(nn.Module):
    """
    Per level i, the features are resized to S_i x S_i; the category branch predicts K class
    logits per grid cell, the kernel branch (with CoordConv) an E-long kernel per grid cell.
    Both towers are shared across levels.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        channels: int,
        num_classes: int,
        num_kernels: int,
        num_convs: int,
        num_grids: List[int],
        norm: str = "GN",
        use_coord_conv: bool = True,
        dcn_type: str = "",
        prior_prob: float = 0.01,
    ):
        """
        Args:
            in_channels (int): channels of the input features.
            channels (int): channels of the towers.
            num_classes (int): K.
            num_kernels (int): E, the length of a kernel.
            num_convs (int): conv blocks per tower.
            num_grids (list[int]): S of each level.
            norm (str): normalisation of the towers ("" for none).
            use_coord_conv (bool): append (x, y) coordinates to the kernel branch's input.
            dcn_type (str): "" (plain convs), "DCN" or "DCNv2" for the last conv of each tower.
            prior_prob (float): initial sigmoid of the category logits.
        """
        super().__init__()
        self.num_grids = list(num_grids)
        self.use_coord_conv = use_coord_conv
        kernel_in = in_channels + 2 if use_coord_conv else in_channels
        self.cate_tower = _tower(in_channels, channels, num_convs, norm, dcn_type)
        self.kernel_tower = _tower(kernel_in, channels, num_convs, norm, dcn_type)
        self.cate_pred = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.kernel_pred = nn.Conv2d(channels, num_kernels, 3, padding=1)
        for layer in (self.cate_pred, self.kernel_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)
        nn.init.constant_(self.cate_pred.bias, prior_bias(prior_prob))

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        return {
            "in_channels": s.INSTANCE_IN_CHANNELS,
            "channels": s.INSTANCE_CHANNELS,
            "num_classes": s.NUM_CLASSES,
            "num_kernels": s.NUM_KERNELS,
            "num_convs": s.NUM_INSTANCE_CONVS,
            "num_grids": list(s.NUM_GRIDS),
            "norm": "" if s.NORM == "none" else s.NORM,  # AdelaiDet spells none "none"
            "use_coord_conv": s.USE_COORD_CONV,
            "dcn_type": s.TYPE_DCN if s.USE_DCN_IN_INSTANCE else "",
            "prior_prob": s.PRIOR_PROB,
        }

    def forward(self, features):
        """
        Args:
            features (list[Tensor[N, C, Hi, Wi]]): one per level, finest first.

        Returns:
            cate_preds (list[Tensor[N, K, S_i, S_i]]): category logits.
            kernel_preds (list[Tensor[N, E, S_i, S_i]]): kernels. Cell (r, c) of level i
                covers rows [r H / S_i, (r + 1) H / S_i) of the padded input, likewise columns.
        """
        cate_preds, kernel_preds = [], []
        for x, grid in zip(features, self.num_grids):
            channels = x.shape[1]
            if self.use_coord_conv:
                x = add_coords(x)  # coordinates of the level, then resized with it (AdelaiDet)
            x = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
            kernel_preds.append(self.kernel_pred(self.kernel_tower(x)))
            cate_preds.append(self.cate_pred(self.cate_tower(x[:, :channels])))
        return cate_preds, kernel_preds
