"""FCOS: Detectron2's meta-architecture built from AdelaiDet's MODEL.FCOS keys, and its head."""

from .fcos import FCOS, OneStageDetector, check_backbone_name, fcos_config_kwargs
from .head import FCOSHead, Scale
from .inference import fcos_detections

__all__ = [
    "FCOS",
    "FCOSHead",
    "OneStageDetector",
    "Scale",
    "check_backbone_name",
    "fcos_config_kwargs",
    "fcos_detections",
]
