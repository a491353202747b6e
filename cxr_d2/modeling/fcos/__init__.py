"""FCOS: Detectron2's meta-architecture built from AdelaiDet's MODEL.FCOS keys, and its head."""

from .fcos import FCOS, fcos_config_kwargs
from .head import FCOSHead, Scale

__all__ = ["FCOS", "FCOSHead", "Scale", "fcos_config_kwargs"]
