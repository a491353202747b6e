"""Meta-architectures and backbones that Detectron2 lacks (SSD, YOLOv3, BlendMask, SOLOv2)."""
from .fcos import FCOS

__all__ = ["FCOS"]
