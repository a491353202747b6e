"""
ResNet (and ResNet-FPN) with deformable 3x3 convolutions from Detectron2's own
MODEL.RESNETS.DEFORM_* keys, on torchvision's deform_conv2d instead of `detectron2._C`.

Detectron2's `build_resnet_backbone` puts `DeformBottleneckBlock` (detectron2.layers.DeformConv,
a compiled op) in every block of a stage with DEFORM_ON_PER_STAGE. These builders use the same
block with `cxr_d2.layers.DeformConv` / `ModulatedDeformConv` (same parameters and names, so
checkpoints load either way) and add MODEL.RESNETS.DEFORM_INTERVAL (AdelaiDet's key): within a
deformable stage, block i is deformable when i % DEFORM_INTERVAL == 0 (SipMask++/YOLACT++ use 3:
blocks 0, 3, 6, ... of res3-res5).
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import (
    BasicStem,
    BottleneckBlock,
    ResNet,
    build_resnet_backbone,
)
from detectron2.modeling.backbone.resnet import DeformBottleneckBlock as _D2DeformBottleneckBlock
from fvcore.nn import weight_init

from ...errors import ConfigError
from ...layers import DeformConv, ModulatedDeformConv

__all__ = [
    "DeformBottleneckBlock",
    "build_deform_resnet_backbone",
    "build_deform_resnet_fpn_backbone",
    "build_retinanet_deform_resnet_fpn_backbone",
]

_BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3],
                     152: [3, 8, 36, 3]}  # fmt: skip


class DeformBottleneckBlock(_D2DeformBottleneckBlock):
    """
    Detectron2's DeformBottleneckBlock (offsets from a zero-initialised 3x3 conv, so it starts
    as a plain bottleneck) whose deformable conv runs on torchvision. Arguments as Detectron2's.
    """

    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        old = self.conv2  # detectron2.layers.(Modulated)DeformConv: needs detectron2._C
        conv = ModulatedDeformConv if self.deform_modulated else DeformConv
        self.conv2 = conv(
            old.in_channels, old.out_channels, old.kernel_size, stride=old.stride,
            padding=old.padding, dilation=old.dilation, groups=old.groups,
            deformable_groups=old.deformable_groups, bias=False, norm=old.norm,
        )  # fmt: skip
        weight_init.c2_msra_fill(self.conv2)


def _deform_blocks(deform, num_blocks, interval):
    """Which blocks of a stage are deformable."""
    return [bool(deform) and i % interval == 0 for i in range(num_blocks)]


@BACKBONE_REGISTRY.register()
def build_deform_resnet_backbone(cfg, input_shape: ShapeSpec):
    """
    As Detectron2's `build_resnet_backbone`, with torchvision deformable convs where
    MODEL.RESNETS.DEFORM_ON_PER_STAGE asks (every DEFORM_INTERVAL-th block). Without any, it
    is Detectron2's builder.

    Returns:
        detectron2.modeling.ResNet
    """
    r = cfg.MODEL.RESNETS
    deform_on = list(r.DEFORM_ON_PER_STAGE)
    if not any(deform_on):
        return build_resnet_backbone(cfg, input_shape)
    interval = r.get("DEFORM_INTERVAL", 1)
    if r.DEPTH not in (50, 101, 152):
        raise ConfigError(
            f"MODEL.RESNETS.DEFORM_ON_PER_STAGE needs bottleneck blocks (depth 50, 101, 152); "
            f"depth is {r.DEPTH}"
        )
    if len(deform_on) != 4 or interval < 1:
        raise ConfigError(
            f"MODEL.RESNETS.DEFORM_ON_PER_STAGE must have 4 entries (res2-res5), got "
            f"{deform_on}; DEFORM_INTERVAL must be >= 1, got {interval}"
        )
    if r.RES5_DILATION not in (1, 2):
        raise ConfigError(f"MODEL.RESNETS.RES5_DILATION must be 1 or 2, got {r.RES5_DILATION}")
    stem = BasicStem(in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS,
                     norm=r.NORM)  # fmt: skip
    in_channels, out_channels = r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    stages = []
    for idx, num_blocks in enumerate(_BLOCKS_PER_STAGE[r.DEPTH]):
        dilation = r.RES5_DILATION if idx == 3 else 1
        first_stride = 1 if idx == 0 or (idx == 3 and dilation == 2) else 2
        blocks = []
        for i, deform in enumerate(_deform_blocks(deform_on[idx], num_blocks, interval)):
            kwargs = dict(
                bottleneck_channels=bottleneck_channels, stride=first_stride if i == 0 else 1,
                num_groups=r.NUM_GROUPS, norm=r.NORM, stride_in_1x1=r.STRIDE_IN_1X1,
                dilation=dilation,
            )  # fmt: skip
            if deform:
                kwargs.update(deform_modulated=r.DEFORM_MODULATED,
                              deform_num_groups=r.DEFORM_NUM_GROUPS)  # fmt: skip
            block = DeformBottleneckBlock if deform else BottleneckBlock
            blocks.append(block(in_channels if i == 0 else out_channels, out_channels, **kwargs))
        stages.append(blocks)
        in_channels, out_channels = out_channels, out_channels * 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


def _fpn(cfg, bottom_up, top_block):
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_deform_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's `build_resnet_fpn_backbone` (P2-P6) on :func:`build_deform_resnet_backbone`."""
    return _fpn(cfg, build_deform_resnet_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_deform_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Detectron2's `build_retinanet_resnet_fpn_backbone` (P3-P7, P6 and P7 from res5) on
    :func:`build_deform_resnet_backbone`."""
    bottom_up = build_deform_resnet_backbone(cfg, input_shape)
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    top_block = LastLevelP6P7(in_channels_p6p7, cfg.MODEL.FPN.OUT_CHANNELS)
    return _fpn(cfg, bottom_up, top_block)
