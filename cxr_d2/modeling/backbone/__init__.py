from .darknet import Darknet, build_darknet_backbone
from .deform_resnet import build_deform_resnet_backbone  # noqa: F401 (registers the builders)
from .fcos_resnet_fpn import build_fcos_resnet_fpn_backbone  # noqa: F401 (registers it)
from .vgg import L2Norm, SSDVGG, build_ssd_vgg_backbone

__all__ = ["Darknet", "build_darknet_backbone", "L2Norm", "SSDVGG", "build_ssd_vgg_backbone"]
