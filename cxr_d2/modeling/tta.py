"""
Test-time augmentation (TTA) for every model: Detectron2's GeneralizedRCNNWithTTA for the
R-CNN family, and :class:`DenseDetectorWithTTA`, the same box merge, for the dense detectors
(RetinaNet, FCOS, SSD, YOLOv3) and dense mask models (SOLOv2, BlendMask, SipMask).

The augmented inputs are Detectron2's DatasetMapperTTA (TEST.AUG.MIN_SIZES x TEST.AUG.FLIP,
each resize capped at TEST.AUG.MAX_SIZE).
"""

from itertools import count

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data.transforms import ResizeTransform
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA, GeneralizedRCNNWithTTA
from fvcore.transforms import HFlipTransform, NoOpTransform, TransformList
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DenseDetectorWithTTA", "build_tta_model", "model_nms_thresh"]

# NMS IoU of a merge for a model whose own NMS has no IoU threshold (SOLOv2's Matrix NMS).
DEFAULT_MERGE_NMS_THRESH = 0.5


def model_nms_thresh(model):
    """The IoU of `model`'s own class-wise test NMS (`test_nms_thresh` of RetinaNet, FCOS,
    BlendMask, SipMask; `nms_thresh` of SSD, YOLOv3), else DEFAULT_MERGE_NMS_THRESH."""
    for name in ("test_nms_thresh", "nms_thresh"):
        value = getattr(model, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return DEFAULT_MERGE_NMS_THRESH


def model_max_detections(model, default):
    """Detections per image the model keeps (`max_detections_per_image`, SOLOv2's
    `max_per_img`), else `default`."""
    value = getattr(model, "max_detections_per_image", None)
    if value is None:
        value = getattr(model, "inference_params", {}).get("max_per_img", default)
    return int(value)


class DenseDetectorWithTTA(nn.Module):
    """
    A dense detector with test-time augmentation; called as the model (list of input dicts
    with "image" (C, H, W) and "height", "width"; returns [{"instances": Instances}]).

    For each image: the model predicts on every augmented input; its boxes (XYXY_ABS) go back
    to the original image (resizes by the model's own postprocessing to the original size,
    then flipped back: x -> W - x); the union is merged by class-wise NMS with Detectron2's
    `fast_rcnn_inference_single_image`, as `GeneralizedRCNNWithTTA._merge_detections`. A mask
    model's `pred_masks` (R, H, W), pasted by the model at the original size, are flipped
    back alike, and each kept detection keeps its own mask (no averaging across the
    augmentations: a dense model has no boxes to re-run its mask head on).
    """

    @configurable
    def __init__(self, model, tta_mapper, nms_thresh, max_detections, batch_size=1):
        """
        Args:
            model (nn.Module): the dense detector, in eval mode.
            tta_mapper (callable): input dict -> list of augmented dicts, each with
                "transforms" (DatasetMapperTTA).
            nms_thresh (float): IoU of the class-wise merge NMS.
            max_detections (int): detections per image after the merge.
            batch_size (int): augmented images per forward pass (1: each at its own size,
                as the evaluator; more pads them to a common size).
        """
        super().__init__()
        if isinstance(model, DistributedDataParallel):
            model = model.module
        self.model = model
        self.tta_mapper = tta_mapper
        self.nms_thresh = nms_thresh
        self.max_detections = max_detections
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg, model, tta_mapper=None, batch_size=1):
        nms = cfg.TEST.AUG.NMS_THRESH
        return {
            "model": model,
            "tta_mapper": tta_mapper or DatasetMapperTTA(cfg),
            "nms_thresh": float(nms) if nms >= 0 else model_nms_thresh(model),
            "max_detections": model_max_detections(model, cfg.TEST.DETECTIONS_PER_IMAGE),
            "batch_size": batch_size,
        }

    def forward(self, batched_inputs):
        return [{"instances": self._inference_one_image(x)} for x in batched_inputs]

    def _inference_one_image(self, input):
        orig_shape = (input["height"], input["width"])
        augmented = self.tta_mapper(input)
        backs = []
        for x in augmented:
            tfm = x.pop("transforms")
            (x["height"], x["width"]), back = _output_size_and_back(
                tfm, x["image"].shape[1:3], orig_shape
            )
            backs.append(back)
        outputs = self._batch_inference(augmented)
        boxes, scores, classes, masks = self._map_back(outputs, backs)
        return self._merge_detections(boxes, scores, classes, masks, orig_shape)

    def _batch_inference(self, inputs):
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start : start + self.batch_size]
            outputs.extend(o["instances"] for o in self.model(batch))
        return outputs

    def _map_back(self, outputs, backs):
        """Boxes (R, 4), scores (R,), classes (R,) and masks (R, H, W) bool or None, in the
        original image, concatenated over the augmented predictions."""
        boxes, masks = [], []
        for output, back in zip(outputs, backs):
            pred = output.pred_boxes.tensor
            boxes.append(torch.from_numpy(back.apply_box(pred.cpu().numpy())).to(pred))
            if output.has("pred_masks"):
                masks.extend(
                    back.apply_segmentation(m.astype(np.uint8)).astype(bool)
                    for m in output.pred_masks.cpu().numpy()
                )
        scores = torch.cat([o.scores for o in outputs])
        classes = torch.cat([o.pred_classes for o in outputs])
        has_masks = outputs[0].has("pred_masks")
        return torch.cat(boxes), scores, classes, (masks if has_masks else None)

    def _merge_detections(self, boxes, scores, classes, masks, shape_hw):
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes, scores, classes = boxes[valid], scores[valid], classes[valid]
        num_classes = int(classes.max()) + 1 if len(classes) else 1
        # +1: fast_rcnn_inference_single_image drops a last (background) column
        scores_2d = torch.zeros(len(boxes), num_classes + 1, device=boxes.device)
        scores_2d[torch.arange(len(boxes)), classes] = scores
        merged, kept = fast_rcnn_inference_single_image(
            boxes, scores_2d, shape_hw, 1e-8, self.nms_thresh, self.max_detections
        )
        if masks is not None:
            rows = [i for i, ok in zip(count(), valid.tolist()) if ok]
            h, w = shape_hw
            stacked = np.zeros((len(kept), h, w), dtype=bool)
            for k, index in enumerate(kept.tolist()):
                stacked[k] = masks[rows[index]]
            merged.pred_masks = torch.from_numpy(stacked).to(boxes.device)
        return merged


def _output_size_and_back(tfm, image_hw, orig_hw):
    """
    Where the model should put its outputs for an augmented input made by `tfm`, and the
    transform taking them to the original image. Resizes and horizontal flips (all that
    DatasetMapperTTA makes) commute: the model predicts straight at the original size (its
    own box scaling and mask pasting) and only the flip is undone. Any other transform: the
    model predicts at the augmented size, and the whole `tfm` is inverted.
    """
    parts = tfm.transforms if isinstance(tfm, TransformList) else [tfm]
    if all(isinstance(t, (ResizeTransform, HFlipTransform, NoOpTransform)) for t in parts):
        flips = sum(isinstance(t, HFlipTransform) for t in parts)
        back = HFlipTransform(orig_hw[1]) if flips % 2 else NoOpTransform()
        return tuple(orig_hw), back
    return tuple(image_hw), tfm.inverse()


def build_tta_model(cfg, model):
    """
    `model` with test-time augmentation as TEST.AUG says: GeneralizedRCNNWithTTA for a
    GeneralizedRCNN (Detectron2's, masks averaged over the augmentations), else
    DenseDetectorWithTTA. The wrapper has the model's call interface.
    """
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    if isinstance(inner, GeneralizedRCNN):
        return GeneralizedRCNNWithTTA(cfg, inner)
    return DenseDetectorWithTTA(cfg, inner)
