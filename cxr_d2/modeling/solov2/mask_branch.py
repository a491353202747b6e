"""SOLOv2's mask feature branch: FPN levels merged into unified mask features at 1/4 scale."""

import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ...layers import conv_block
from .layers import add_coords

__all__ = ["SOLOv2MaskBranch"]


class SOLOv2MaskBranch(nn.Module):
    """
    Level 0 (P2): one conv block. Level i > 0: i times (conv block, 2x bilinear upsampling),
    so every level reaches P2's resolution; the coarsest level gets (x, y) coordinates first.
    The levels are summed and a 1x1 conv block gives E channels: the unified mask features
    that the predicted kernels are convolved with.
    """

    @configurable
    def __init__(self, *, in_channels: int, channels: int, num_masks: int, num_levels: int,
                 norm: str = "GN"):  # fmt: skip
        """
        Args:
            in_channels (int): channels of the FPN features.
            channels (int): channels inside the branch.
            num_masks (int): E, channels of the output.
            num_levels (int): FPN levels used, finest first, each at half the previous scale.
            norm (str): normalisation ("" for none).
        """
        super().__init__()
        self.levels = nn.ModuleList()
        for i in range(num_levels):
            layers = []
            coords = 2 if 0 < i == num_levels - 1 else 0
            for j in range(max(i, 1)):
                c_in = channels if j > 0 else in_channels + coords
                layers.append(conv_block(c_in, channels, norm=norm))
                if i > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.levels.append(nn.Sequential(*layers))
        self.pred = conv_block(channels, num_masks, 1, norm=norm)

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SOLOV2
        return {
            "in_channels": s.MASK_IN_CHANNELS,
            "channels": s.MASK_CHANNELS,
            "num_masks": s.NUM_MASKS,
            "num_levels": len(s.MASK_IN_FEATURES),
            "norm": "" if s.NORM == "none" else s.NORM,  # AdelaiDet spells none "none"
        }

    def forward(self, features):
        """
        Args:
            features (list[Tensor[N, C, Hi, Wi]]): FPN levels, finest first (P2 ... P5).

        Returns:
            Tensor[N, E, H0, W0]: mask features at the finest level's resolution.
        """
        out = self.levels[0](features[0])
        last = len(features) - 1
        for i in range(1, len(features)):
            x = add_coords(features[i]) if i == last else features[i]
            x = self.levels[i](x)
            if x.shape[-2:] != out.shape[-2:]:  # inputs not divisible by the coarsest stride
                x = F.interpolate(x, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out + x
        return self.pred(out)
