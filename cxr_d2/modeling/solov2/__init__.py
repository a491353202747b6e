"""
SOLOv2: instance head (category and kernel branches), mask feature branch, targets, Dice and
focal losses, Matrix NMS and inference, meta-architecture.
"""

from .head import SOLOv2InstanceHead, resample_to_strides
from .inference import masks_to_boxes, point_nms, solov2_inference_single
from .layers import DeformConvBlock, add_coords, coord_features, dynamic_conv
from .loss import dice_loss, solov2_losses, upsample_logits
from .mask_branch import SOLOv2MaskBranch
from .matrix_nms import matrix_nms
from .solov2 import SOLOv2
from .targets import assign_level, downsample_masks, mask_centres, solov2_targets

__all__ = [
    "DeformConvBlock",
    "SOLOv2",
    "SOLOv2InstanceHead",
    "SOLOv2MaskBranch",
    "add_coords",
    "assign_level",
    "coord_features",
    "dice_loss",
    "downsample_masks",
    "dynamic_conv",
    "mask_centres",
    "masks_to_boxes",
    "matrix_nms",
    "point_nms",
    "resample_to_strides",
    "solov2_inference_single",
    "solov2_losses",
    "solov2_targets",
    "upsample_logits",
]
