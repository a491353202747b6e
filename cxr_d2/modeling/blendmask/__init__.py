"""BlendMask: FCOS + bottom module (bases) + top layer (attentions) + blender."""

from .basis_module import BASIS_MODULE_REGISTRY, ProtoNet, build_basis_module
from .blender import Blender, blend, blender_loss, mask_targets
from .blendmask import BlendMask
from .inference import decode_detections
from .semantic_loss import semantic_loss, semantic_targets
from .top_layer import TopLayer

__all__ = [
    "BASIS_MODULE_REGISTRY",
    "BlendMask",
    "Blender",
    "ProtoNet",
    "TopLayer",
    "blend",
    "blender_loss",
    "build_basis_module",
    "decode_detections",
    "mask_targets",
    "semantic_loss",
    "semantic_targets",
]
