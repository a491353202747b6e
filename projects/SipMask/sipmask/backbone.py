"""SipMask++'s backbone: the deformable ResNet with FPN levels P6, P7 from P5 (official)."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from cxr_d2.modeling.backbone.deform_resnet import build_deform_resnet_backbone

__all__ = ["build_fcos_deform_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fcos_deform_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """
    :func:`build_deform_resnet_backbone` (DCN in the stages of
    MODEL.RESNETS.DEFORM_ON_PER_STAGE) + FPN with P6 = conv(P5) and P7 = conv(ReLU(P6)), as the
    official SipMask++ neck (`add_extra_convs`, `extra_convs_on_inputs=False`,
    `relu_before_extra_convs`); `build_retinanet_deform_resnet_fpn_backbone` takes P6 from C5.
    """
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=build_deform_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
