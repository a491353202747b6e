"""
YOLOv3: head (neck and output convs), targets, losses, meta-architecture, and the k-means of
box shapes that fits its anchors (and SSD's default boxes) to a dataset. The backbone,
Darknet-53, is in `cxr_d2/modeling/backbone/darknet.py`.
"""

from .anchor_kmeans import (
    kmeans_iou,
    ssd_priors_from_clusters,
    wh_iou_np,
    yolov3_anchors_from_clusters,
)
from .head import YOLOv3Head
from .loss import yolov3_losses
from .targets import (
    assign_yolo_targets,
    build_yolo_targets,
    decode_yolo_boxes,
    ignore_mask,
    wh_iou,
    yolo_grid,
)
from .yolov3 import YOLOv3, yolov3_inference

__all__ = [
    "YOLOv3",
    "YOLOv3Head",
    "assign_yolo_targets",
    "build_yolo_targets",
    "decode_yolo_boxes",
    "ignore_mask",
    "kmeans_iou",
    "ssd_priors_from_clusters",
    "wh_iou",
    "wh_iou_np",
    "yolo_grid",
    "yolov3_anchors_from_clusters",
    "yolov3_inference",
    "yolov3_losses",
]
