"""Meta-architectures and backbones that Detectron2 lacks (SSD, YOLOv3, BlendMask, SOLOv2)."""

from .backbone import Darknet, SSDVGG, build_darknet_backbone, build_ssd_vgg_backbone
from .blendmask import BlendMask  # noqa: F401 (registers META_ARCHITECTURE "BlendMask")
from .fcos import FCOS  # noqa: F401 (registers META_ARCHITECTURE "FCOS")
from .ssd import SSD
from .solov2 import SOLOv2  # noqa: F401 (registers META_ARCHITECTURE "SOLOv2")
from .ssd_prior import SSDPriorGenerator
from .yolov3 import YOLOv3

__all__ = [
    "Darknet",
    "SSDVGG",
    "build_darknet_backbone",
    "build_ssd_vgg_backbone",
    "SSD",
    "SSDPriorGenerator",
    "YOLOv3",
]
