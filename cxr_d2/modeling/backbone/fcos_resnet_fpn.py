"""
ResNet + FPN with MODEL.FCOS.TOP_LEVELS extra levels computed from P5, registered under
AdelaiDet's name "build_fcos_resnet_fpn_backbone" so its FCOS and BlendMask configs load.
"""

import fvcore.nn.weight_init as weight_init
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from torch import nn

from ...errors import ConfigError

__all__ = ["LastLevelP6", "build_fcos_resnet_fpn_backbone"]


class LastLevelP6(nn.Module):
    """P6 = 3x3 stride-2 conv of `in_feature` (P5 here): one extra FPN level."""

    def __init__(self, in_channels, out_channels, in_feature="p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        """(N, C, H, W) -> [(N, C', ceil(H/2), ceil(W/2))]."""
        return [self.p6(x)]


def _top_block(top_levels, channels):
    if top_levels == 2:
        return LastLevelP6P7(channels, channels, in_feature="p5")
    if top_levels == 1:
        return LastLevelP6(channels, channels, in_feature="p5")
    if top_levels == 0:
        return None
    raise ConfigError(
        f"MODEL.FCOS.TOP_LEVELS is {top_levels}; build_fcos_resnet_fpn_backbone builds 0, 1 "
        "(P6) or 2 (P6, P7) levels above P5"
    )


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet (MODEL.RESNETS) + FPN (MODEL.FPN) whose extra levels come from P5, as in FCOS and
    AdelaiDet: TOP_LEVELS 2 gives P6, P7 (Detectron2's LastLevelP6P7 fed with P5), 1 gives
    P6, 0 none. Detectron2's build_retinanet_resnet_fpn_backbone feeds C5 instead.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=_top_block(cfg.MODEL.FCOS.TOP_LEVELS, out_channels),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
