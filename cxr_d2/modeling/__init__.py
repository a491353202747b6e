"""
Meta-architectures and backbones that Detectron2 lacks, one package per architecture:
fcos/, ssd/, yolov3/, solov2/, blendmask/ (each registers its META_ARCHITECTURE on import),
and backbone/ (Darknet-53, SSD's VGG16, deformable ResNets, FCOS's ResNet-FPN).
"""

from .backbone import Darknet, SSDVGG, build_darknet_backbone, build_ssd_vgg_backbone
from .blendmask import BlendMask
from .fcos import FCOS, FCOSHead
from .solov2 import SOLOv2
from .ssd import SSD, SSDHead, SSDPriorGenerator
from .yolov3 import YOLOv3, YOLOv3Head

__all__ = [
    "BlendMask",
    "Darknet",
    "FCOS",
    "FCOSHead",
    "SOLOv2",
    "SSD",
    "SSDHead",
    "SSDPriorGenerator",
    "SSDVGG",
    "YOLOv3",
    "YOLOv3Head",
    "build_darknet_backbone",
    "build_ssd_vgg_backbone",
]
