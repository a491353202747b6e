"""SSD (Liu et al., ECCV 2016) as a Detectron2 meta-architecture."""

from typing import List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.dense_detector import DenseDetector, permute_to_N_HWA_K
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ...errors import ConfigError
from ..checks import check_in_features
from ..dense_postprocess import select_and_nms
from .head import SSDHead
from .loss import ssd_losses, ssd_match
from .prior import SSDPriorGenerator

__all__ = ["SSD", "ssd_inference"]


@META_ARCH_REGISTRY.register()
class SSD(DenseDetector):
    """
    Single-shot detector: backbone sources -> SSDHead -> per default box, softmax class scores
    (background last) and box deltas. Training matches default boxes to ground truth
    (`ssd_match`) and uses `ssd_losses` (smooth L1 + softmax with 3:1 hard negatives);
    inference is class-wise NMS (`ssd_inference`).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: SSDHead,
        prior_generator: SSDPriorGenerator,
        box2box_transform: Box2BoxTransform,
        in_features: List[str],
        num_classes: int,
        pixel_mean,
        pixel_std,
        iou_threshold=0.5,
        neg_pos_ratio=3,
        smooth_l1_beta=1.0,
        score_thresh=0.02,
        topk_candidates=1000,
        nms_thresh=0.45,
        max_detections_per_image=100,
    ):
        """
        Args:
            backbone: returns the features named in `in_features`.
            head, prior_generator, box2box_transform: see their classes.
            num_classes (int): K foreground classes.
            pixel_mean, pixel_std (list[float]): input normalisation.
            iou_threshold, neg_pos_ratio, smooth_l1_beta: training (see `ssd_match`,
                `ssd_losses`).
            score_thresh, topk_candidates, nms_thresh, max_detections_per_image: inference.
        """
        super().__init__(
            backbone, head, in_features, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        self.prior_generator = prior_generator
        self.box2box_transform = box2box_transform
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.smooth_l1_beta = smooth_l1_beta
        self.score_thresh = score_thresh
        self.topk_candidates = topk_candidates
        self.nms_thresh = nms_thresh
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        ssd = cfg.MODEL.SSD
        backbone = build_backbone(cfg)
        shapes = check_in_features("MODEL.SSD.IN_FEATURES", ssd.IN_FEATURES, backbone)
        if len(ssd.PRIOR.STEPS) != len(ssd.IN_FEATURES):
            raise ConfigError(
                f"MODEL.SSD.PRIOR.STEPS has {len(ssd.PRIOR.STEPS)} entries but "
                f"MODEL.SSD.IN_FEATURES "
                f"has {len(ssd.IN_FEATURES)}: give one step per source layer"
            )
        input_shape = [shapes[f] for f in ssd.IN_FEATURES]
        prior_generator = SSDPriorGenerator(cfg)
        return {
            "backbone": backbone,
            "head": SSDHead(cfg, input_shape, prior_generator.num_cell_anchors),
            "prior_generator": prior_generator,
            "box2box_transform": Box2BoxTransform(weights=ssd.BBOX_REG_WEIGHTS),
            "in_features": list(ssd.IN_FEATURES),
            "num_classes": ssd.NUM_CLASSES,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "iou_threshold": ssd.IOU_THRESHOLD,
            "neg_pos_ratio": ssd.NEG_POS_RATIO,
            "smooth_l1_beta": ssd.SMOOTH_L1_BETA,
            "score_thresh": ssd.SCORE_THRESH_TEST,
            "topk_candidates": ssd.TOPK_CANDIDATES_TEST,
            "nms_thresh": ssd.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def _flatten(self, features, predictions):
        """Head outputs as (N, R, K + 1) logits and (N, R, 4) deltas, and the R default
        boxes (Boxes, XYXY_ABS input pixels), levels in the order of `head_in_features`."""
        logits, deltas = predictions
        priors = Boxes.cat(self.prior_generator(features))
        logits = cat([permute_to_N_HWA_K(x, self.num_classes + 1) for x in logits], 1)
        deltas = cat([permute_to_N_HWA_K(x, 4) for x in deltas], 1)
        return logits, deltas, priors

    def forward_training(self, images, features, predictions, gt_instances):
        """`ssd_losses` after matching the default boxes to `gt_instances`."""
        logits, deltas, priors = self._flatten(features, predictions)
        gt_classes, gt_deltas = self.label_priors(priors, gt_instances)
        get_event_storage().put_scalar(
            "ssd/num_pos_per_image",
            (gt_classes != self.num_classes).sum().item() / len(gt_instances),
        )
        return ssd_losses(
            logits, deltas, gt_classes, gt_deltas, self.neg_pos_ratio, self.smooth_l1_beta
        )

    def forward_inference(self, images, features, predictions):
        """list[Instances] in input pixels (`DenseDetector.forward` rescales them)."""
        logits, deltas, priors = self._flatten(features, predictions)
        return ssd_inference(
            logits,
            deltas,
            priors,
            images.image_sizes,
            self.box2box_transform,
            self.score_thresh,
            self.topk_candidates,
            self.nms_thresh,
            self.max_detections_per_image,
        )

    @torch.no_grad()
    def label_priors(self, priors: Boxes, gt_instances: List[Instances]):
        """
        Returns:
            gt_classes (Tensor[N, R] int64): matched class, K (background) when unmatched.
            gt_deltas (Tensor[N, R, 4]): deltas from each default box to its matched box
                (zeros where unmatched).
        """
        all_classes, all_deltas = [], []
        for inst in gt_instances:
            iou = pairwise_iou(inst.gt_boxes, priors)  # (G, R)
            matched, positive = ssd_match(iou, self.iou_threshold)
            if len(inst) == 0:
                classes = torch.full_like(matched, self.num_classes)
                target = torch.zeros_like(priors.tensor)
            else:
                classes = inst.gt_classes[matched].clone()
                classes[~positive] = self.num_classes
                target = self.box2box_transform.get_deltas(
                    priors.tensor, inst.gt_boxes.tensor[matched]
                )
            all_classes.append(classes)
            all_deltas.append(target)
        return torch.stack(all_classes), torch.stack(all_deltas)


def ssd_inference(
    logits,
    deltas,
    priors: Boxes,
    image_sizes,
    box2box_transform,
    score_thresh=0.02,
    topk_candidates=1000,
    nms_thresh=0.45,
    max_detections=100,
):
    """
    Softmax scores; (default box, class) pairs above `score_thresh`, the best
    `topk_candidates` of them, class-wise NMS, the best `max_detections`.

    Args:
        logits (Tensor[N, R, K + 1]), deltas (Tensor[N, R, 4]): head outputs.
        priors (Boxes): R default boxes (XYXY_ABS, input pixels).
        image_sizes (list[(h, w)]): size of each image before padding (boxes are clipped).

    Returns:
        list[Instances]: per image, pred_boxes / scores / pred_classes in input pixels.
    """
    num_classes = logits.shape[-1] - 1
    results = []
    for logit, delta, size in zip(logits, deltas, image_sizes):
        scores = F.softmax(logit, dim=-1)[:, :num_classes]  # (R, K)
        boxes = box2box_transform.apply_deltas(delta, priors.tensor)  # (R, 4)
        results.append(
            select_and_nms(
                scores, boxes, size, score_thresh, topk_candidates, nms_thresh, max_detections
            )
        )
    return results
