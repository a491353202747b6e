from .darknet import Darknet, build_darknet_backbone
from .vgg import L2Norm, SSDVGG, build_ssd_vgg_backbone

__all__ = ["Darknet", "build_darknet_backbone", "L2Norm", "SSDVGG", "build_ssd_vgg_backbone"]
