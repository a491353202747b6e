"""YOLOv3 (Redmon and Farhadi, 2018) as a Detectron2 meta-architecture."""

import logging
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage

from ...errors import ConfigError
from ..checks import check_in_features
from ..dense_postprocess import select_and_nms
from .head import YOLOv3Head
from .loss import yolov3_losses
from .targets import build_yolo_targets, decode_yolo_boxes, ignore_mask, yolo_grid

__all__ = ["YOLOv3", "yolov3_inference"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class YOLOv3(DenseDetector):
    """
    Backbone (Darknet-53) -> YOLOv3Head (three scales, three anchors each) -> per prediction
    box offsets, objectness and K independent class scores. Training assigns each box to one
    (scale, cell, anchor) (`assign_yolo_targets`) and uses `yolov3_losses`; inference scores
    objectness x class and runs class-wise NMS (`yolov3_inference`).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: YOLOv3Head,
        in_features: List[str],
        anchors,
        num_classes,
        pixel_mean,
        pixel_std,
        ignore_thresh=0.5,
        box_loss="yolo",
        loss_weights=(1.0, 1.0, 1.0),
        score_thresh=0.005,
        topk_candidates=1000,
        nms_thresh=0.45,
        max_detections_per_image=100,
    ):
        """
        Args:
            backbone: returns the features named in `in_features` (finest first).
            head (YOLOv3Head).
            anchors (list[list[list[float]]]): (w, h) per level and anchor, input pixels.
            num_classes (int): K.
            pixel_mean, pixel_std (list[float]): input normalisation.
            ignore_thresh, box_loss, loss_weights: training (see `yolov3_losses`).
            score_thresh, topk_candidates, nms_thresh, max_detections_per_image: inference.
        """
        super().__init__(
            backbone, head, in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.strides = [backbone.output_shape()[f].stride for f in in_features]
        self.register_buffer(
            "anchors", torch.tensor(anchors, dtype=torch.float32), False
        )  # (L, A, 2)
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.box_loss = box_loss
        self.loss_weights = tuple(loss_weights)
        self.score_thresh = score_thresh
        self.topk_candidates = topk_candidates
        self.nms_thresh = nms_thresh
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        y = cfg.MODEL.YOLOV3
        backbone = build_backbone(cfg)
        shapes = check_in_features("MODEL.YOLOV3.IN_FEATURES", y.IN_FEATURES, backbone)
        anchors = [[list(map(float, a)) for a in level] for level in y.ANCHORS]
        if len(anchors) != len(y.IN_FEATURES) or len({len(level) for level in anchors}) != 1:
            raise ConfigError(
                f"MODEL.YOLOV3.ANCHORS must hold one list of (w, h) pairs per feature in "
                f"MODEL.YOLOV3.IN_FEATURES ({len(y.IN_FEATURES)}), the same number per feature; "
                f"got {anchors}"
            )
        if y.BOX_LOSS not in ("yolo", "giou"):
            raise ConfigError(f"MODEL.YOLOV3.BOX_LOSS is '{y.BOX_LOSS}'; use 'yolo' or 'giou'")
        input_shape = [shapes[f] for f in y.IN_FEATURES]
        return {
            "backbone": backbone,
            "head": YOLOv3Head(cfg, input_shape, [len(level) for level in anchors]),
            "in_features": list(y.IN_FEATURES),
            "anchors": anchors,
            "num_classes": y.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "ignore_thresh": y.IGNORE_THRESH,
            "box_loss": y.BOX_LOSS,
            "loss_weights": y.LOSS_WEIGHTS,
            "score_thresh": y.SCORE_THRESH_TEST,
            "topk_candidates": y.TOPK_CANDIDATES_TEST,
            "nms_thresh": y.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        """Normalised images padded to a multiple of the coarsest stride."""
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(
            images, max(self.backbone.size_divisibility, max(self.strides))
        )

    def _decode(self, predictions):
        """Head outputs as raw (N, R, 5 + K) and decoded (N, R, 4) XYXY input-pixel boxes,
        with the (R, 5) grid of `yolo_grid` and the (H, W) of each level."""
        grid_sizes = [tuple(x.shape[-2:]) for x in predictions]
        grid = yolo_grid(grid_sizes, self.strides, self.anchors, self.device)
        raw = cat([permute_to_N_HWA_K(x, 5 + self.num_classes) for x in predictions], dim=1)
        return raw, decode_yolo_boxes(raw, grid), grid, grid_sizes

    def forward_training(self, images, features, predictions, gt_instances):
        """`yolov3_losses` after assigning `gt_instances` to (scale, cell, anchor)."""
        raw, pred_boxes, grid, grid_sizes = self._decode(predictions)
        targets, gt_boxes = self.label_predictions(
            pred_boxes, grid, grid_sizes, gt_instances, images.tensor.shape[-2:]
        )
        return yolov3_losses(raw, pred_boxes, targets, gt_boxes, self.box_loss, self.loss_weights)

    def forward_inference(self, images, features, predictions):
        """list[Instances] in input pixels (`DenseDetector.forward` rescales them)."""
        raw, pred_boxes, _, _ = self._decode(predictions)
        return yolov3_inference(
            raw,
            pred_boxes,
            images.image_sizes,
            self.score_thresh,
            self.topk_candidates,
            self.nms_thresh,
            self.max_detections_per_image,
        )

    @torch.no_grad()
    def label_predictions(
        self, pred_boxes, grid, grid_sizes, gt_instances: List[Instances], input_size
    ):
        """
        Returns:
            targets (dict of Tensor[N, ...]): `build_yolo_targets` stacked, plus `ignore`.
            gt_boxes (Tensor[N, R, 4]): the assigned ground-truth box (zeros where none).
        """
        per_image, gt_boxes = [], []
        collisions = 0
        for boxes_i, inst in zip(pred_boxes, gt_instances):
            t = build_yolo_targets(
                inst.gt_boxes,
                inst.gt_classes,
                grid,
                grid_sizes,
                self.strides,
                self.anchors,
                self.num_classes,
                input_size,
            )
            collisions += t.pop("collisions")
            t["ignore"] = ignore_mask(boxes_i.detach(), inst.gt_boxes, self.ignore_thresh)
            matched = torch.zeros_like(boxes_i)
            if len(inst) > 0:
                matched[t["positive"]] = inst.gt_boxes.tensor[t["gt_index"][t["positive"]]]
            per_image.append(t)
            gt_boxes.append(matched)
        storage = get_event_storage()
        storage.put_scalar(
            "yolov3/num_pos_per_image",
            sum(t["positive"].sum().item() for t in per_image) / len(per_image),
        )
        storage.put_scalar("yolov3/target_collisions", collisions)
        if collisions:
            logger.debug("%d ground-truth boxes shared a prediction with a later box", collisions)
        targets = {k: torch.stack([t[k] for t in per_image]) for k in per_image[0]}
        return targets, torch.stack(gt_boxes)


def yolov3_inference(
    raw,
    pred_boxes,
    image_sizes,
    score_thresh=0.005,
    topk_candidates=1000,
    nms_thresh=0.45,
    max_detections=100,
):
    """
    Args:
        raw (Tensor[N, R, 5 + K]): head outputs; pred_boxes (Tensor[N, R, 4]): decoded.
        image_sizes (list[(h, w)]): size before padding; boxes are clipped to it.

    Returns:
        list[Instances]: per image, pred_boxes / scores (sigmoid(obj) * sigmoid(class)) /
        pred_classes in input pixels, after class-wise NMS.
    """
    results = []
    for r, boxes, size in zip(raw, pred_boxes, image_sizes):
        scores = r[:, 4:5].sigmoid() * r[:, 5:].sigmoid()  # (R, K)
        results.append(
            select_and_nms(
                scores, boxes, size, score_thresh, topk_candidates, nms_thresh, max_detections
            )
        )
    return results
