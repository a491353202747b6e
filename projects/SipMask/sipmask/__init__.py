"""SipMask as a Detectron2 project: importing it registers META_ARCHITECTUREs "SipMask" and
"SipMaskVIS"."""
from .config import add_sipmask_config
from .backbone import build_fcos_deform_resnet_fpn_backbone
from .head import FeatureAlign, SipMaskHead
from .basis import BasisModule
from .loss import mask_alignment_weighted_loss, per_instance_mask_loss
from .sipmask import SipMask, paste_masks
from .smp import spatial_mask_prediction
from . import export  # noqa: F401,I001 (registers SipMask in cxr_d2.export)
from .vis import SipMaskVIS, TrackHead

__all__ = [
    "add_sipmask_config",
    "BasisModule",
    "build_fcos_deform_resnet_fpn_backbone",
    "FeatureAlign",
    "SipMaskHead",
    "SipMask",
    "SipMaskVIS",
    "TrackHead",
    "mask_alignment_weighted_loss",
    "paste_masks",
    "per_instance_mask_loss",
    "spatial_mask_prediction",
]
