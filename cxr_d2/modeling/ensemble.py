"""
Ensembles: several models' boxes fused per image by weighted boxes fusion (WBF, Solovyev et
al. 2021, the `ensemble_boxes` package), the standard of CXR detection challenges.
"""

import math

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances
from ensemble_boxes import weighted_boxes_fusion
from torch import nn

from ..errors import ConfigError

__all__ = ["ModelEnsemble", "fuse_boxes", "CONF_TYPES"]

# ensemble_boxes' weighted_boxes_fusion conf_type values.
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")

# Keys of a model input that a member's own mapper needs to read the image again.
_RECORD_KEYS = ("file_name", "height", "width", "image_id")


def fuse_boxes(
    instances,
    weights,
    image_size,
    iou_thresh=0.55,
    skip_box_thresh=0.0,
    conf_type="avg",
    max_detections=100,
):
    """
    Weighted boxes fusion of one image's predictions by several models.

    Args:
        instances (list[Instances]): per model, pred_boxes (R_i, 4) XYXY_ABS in the image of
            `image_size`, scores (R_i,), pred_classes (R_i,).
        weights (list[float]): per model.
        image_size (tuple): (height, width) of that image.
        iou_thresh, skip_box_thresh, conf_type: weighted_boxes_fusion's.
        max_detections (int): keep the best this many fused boxes.

    Returns:
        Instances of `image_size`: pred_boxes (R, 4) XYXY_ABS, scores (R,), pred_classes (R,),
        by decreasing score. WBF works in [0, 1] coordinates: x / width, y / height (boxes
        clipped to the image), and the fused boxes are scaled back.
    """
    h, w = image_size
    scale = np.array([w, h, w, h], dtype=np.float64)
    boxes, scores, labels = weighted_boxes_fusion(
        [
            np.clip(i.pred_boxes.tensor.detach().cpu().double().numpy() / scale, 0, 1)
            for i in instances
        ],
        [i.scores.detach().cpu().double().numpy() for i in instances],
        [i.pred_classes.detach().cpu().numpy() for i in instances],
        weights=list(weights),
        iou_thr=iou_thresh,
        skip_box_thr=skip_box_thresh,
        conf_type=conf_type,
    )
    order = np.argsort(-scores, kind="stable")[:max_detections]
    result = Instances(image_size)
    result.pred_boxes = Boxes(torch.as_tensor(boxes[order] * scale, dtype=torch.float32))
    result.scores = torch.as_tensor(scores[order], dtype=torch.float32)
    result.pred_classes = torch.as_tensor(labels[order], dtype=torch.int64)
    return result


class ModelEnsemble(nn.Module):
    """
    Several trained models called as one: each predicts every image (on its own input size
    and format where they differ), and their boxes are fused by :func:`fuse_boxes`. Same
    call interface as a model in eval mode; returns [{"instances"}] with boxes only (WBF
    fuses boxes: members' masks are dropped).
    """

    @configurable
    def __init__(
        self,
        models,
        weights,
        input_mappers=None,
        iou_thresh=0.55,
        skip_box_thresh=0.0,
        conf_type="avg",
        max_detections=100,
    ):
        """
        Args:
            models (list[nn.Module]): the members, in eval mode (a TTA wrapper is a member
                too).
            weights (list[float]): positive, per member.
            input_mappers (list[callable or None]): per member, None to take the caller's
                input as it is, or a test mapper reading the record {"file_name", "height",
                "width", "image_id"} again at the member's own input size and format.
            iou_thresh, skip_box_thresh, conf_type, max_detections: :func:`fuse_boxes`'.
        """
        super().__init__()
        if len(models) != len(weights) or not models:
            raise ConfigError(
                f"an ensemble needs one weight per model; got {len(models)} "
                f"models and {len(weights)} weights"
            )
        bad = [x for x in weights if not (math.isfinite(x) and x > 0)]
        if bad:
            raise ConfigError(f"ensemble weights must be positive numbers; got {bad[0]}")
        if conf_type not in CONF_TYPES:
            raise ConfigError(
                f"TEST.ENSEMBLE.CONF_TYPE is {conf_type!r}; use one of " f"{', '.join(CONF_TYPES)}"
            )
        if not 0 < iou_thresh <= 1:
            raise ConfigError(f"TEST.ENSEMBLE.IOU_THRESH is {iou_thresh}; give a value in (0, 1]")
        self.models = nn.ModuleList(models)
        self.weights = [float(x) for x in weights]
        self.input_mappers = list(input_mappers or [None] * len(models))
        self.fusion = {
            "iou_thresh": iou_thresh,
            "skip_box_thresh": skip_box_thresh,
            "conf_type": conf_type,
            "max_detections": max_detections,
        }

    @classmethod
    def from_config(cls, cfg, models, weights, input_mappers=None):
        e = cfg.TEST.ENSEMBLE
        return {
            "models": models,
            "weights": weights,
            "input_mappers": input_mappers,
            "iou_thresh": e.IOU_THRESH,
            "skip_box_thresh": e.SKIP_BOX_THRESH,
            "conf_type": e.CONF_TYPE,
            "max_detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def member_outputs(self, batched_inputs):
        """Per member, its list of Instances for `batched_inputs`."""
        outputs = []
        for model, mapper in zip(self.models, self.input_mappers):
            inputs = batched_inputs
            if mapper is not None:
                inputs = [mapper({k: x[k] for k in _RECORD_KEYS if k in x}) for x in batched_inputs]
            outputs.append([o["instances"] for o in model(inputs)])
        return outputs

    def forward(self, batched_inputs):
        per_member = self.member_outputs(batched_inputs)
        results = []
        for i, x in enumerate(batched_inputs):
            size = (x.get("height", x["image"].shape[1]), x.get("width", x["image"].shape[2]))
            fused = fuse_boxes([m[i] for m in per_member], self.weights, size, **self.fusion)
            results.append({"instances": fused.to(per_member[0][i].scores.device)})
        return results
