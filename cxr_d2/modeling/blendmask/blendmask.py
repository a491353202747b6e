"""BlendMask (Chen et al., CVPR 2020) on Detectron2's FCOS, with AdelaiDet's config keys."""

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess, sem_seg_postprocess
from detectron2.structures import BitMasks, PolygonMasks
from detectron2.utils.events import get_event_storage

from ...errors import ConfigError
from ..fcos import FCOS, FCOSHead, check_backbone_name, fcos_config_kwargs
from .basis_module import build_basis_module
from .blender import Blender, blender_loss, mask_targets
from .inference import decode_detections
from .semantic_loss import semantic_loss
from .top_layer import TopLayer

__all__ = ["BlendMask"]


def _check_config(cfg):
    if not cfg.MODEL.MASK_ON:
        raise ConfigError(
            "MODEL.MASK_ON is False; BlendMask trains on instance masks: set MODEL.MASK_ON True"
        )
    if cfg.MODEL.PANOPTIC_FPN.COMBINE.ENABLED:
        raise ConfigError(
            "MODEL.PANOPTIC_FPN.COMBINE.ENABLED is True; cxr-d2's BlendMask has "
            "no panoptic head: set it False"
        )


@META_ARCH_REGISTRY.register()
class BlendMask(FCOS):
    """
    BlendMask: FCOS (detections, `loss_fcos_*`), a bottom module producing K bases from the
    FPN (`loss_basis_sem` with its semantic head), a top layer predicting K x M x M
    attentions per location from the box tower, and the blender (`loss_mask`).

    Training blends, for every positive location, the bases pooled in its GT box with its
    attentions, against the GT mask cropped to that box (as AdelaiDet). Inference blends in
    the detected boxes and pastes the R x R masks into the image (Detectron2's
    `detector_postprocess` / `paste_masks_in_image`).
    """

    @configurable
    def __init__(
        self,
        *,
        basis_module,
        top_layer,
        blender,
        instance_loss_weight=1.0,
        sem_loss_weight=0.3,
        visualize=False,
        **kwargs
    ):
        """
        Args:
            basis_module: maps the backbone's feature dict to (bases, sem_logits or None).
            top_layer: :class:`TopLayer` on the head's box tower.
            blender: :class:`Blender`.
            instance_loss_weight: weight of loss_mask.
            sem_loss_weight: weight of loss_basis_sem.
            visualize: inference also returns "bases" (and "sem_thing_seg").
            kwargs: arguments of :class:`cxr_d2.modeling.FCOS` (`head` an FCOSHead; its
                `thresh_with_ctr` and `clip_before_nms` apply to the detections whose masks
                are blended).
        """
        super().__init__(**kwargs)
        self.basis_module = basis_module
        self.top_layer = top_layer
        self.blender = blender
        self.instance_loss_weight = instance_loss_weight
        self.sem_loss_weight = sem_loss_weight
        self.visualize = visualize

    @classmethod
    def from_config(cls, cfg):
        _check_config(cfg)
        check_backbone_name(cfg)
        backbone = build_backbone(cfg)
        kwargs = fcos_config_kwargs(cfg, backbone)
        shapes = backbone.output_shape()
        head_shapes = [shapes[k] for k in cfg.MODEL.FCOS.IN_FEATURES]
        kwargs["head"] = FCOSHead(cfg, head_shapes)
        basis_module = build_basis_module(cfg, shapes)
        kwargs.update(
            basis_module=basis_module,
            top_layer=TopLayer(cfg, head_shapes[0].channels),
            blender=Blender(cfg, basis_module.stride),
            instance_loss_weight=cfg.MODEL.BLENDMASK.INSTANCE_LOSS_WEIGHT,
            sem_loss_weight=cfg.MODEL.BASIS_MODULE.LOSS_WEIGHT,
            visualize=cfg.MODEL.BLENDMASK.VISUALIZE,
        )
        return kwargs

    def forward(self, batched_inputs):
        """
        As :meth:`DenseDetector.forward`. Training returns loss_fcos_{cls,loc,ctr}, loss_mask
        (and loss_basis_sem); inference per image {"instances"} with pred_boxes, scores,
        pred_classes and pred_masks (R, H, W) bool at the input's "height" x "width".
        """
        images = self.preprocess_image(batched_inputs)
        all_features = self.backbone(images.tensor)
        features = [all_features[f] for f in self.head_in_features]
        cls_feats, box_feats = self.head.towers(features)
        logits, bbox_reg, ctrness = self.head.predict(cls_feats, box_feats)
        bases, sem_logits = self.basis_module(all_features)
        predictions = (logits, bbox_reg, ctrness, self.top_layer(box_feats), bases, sem_logits)
        if self.training:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            return self.forward_training(images, features, predictions, gt_instances)
        results = self.forward_inference(images, features, predictions)
        return self._postprocess(results, batched_inputs, images.image_sizes, bases, sem_logits)

    def _split(self, predictions):
        """Dense predictions as per level (N, Ri, C), (N, Ri, 4), (N, Ri, 1), (N, Ri, K*M*M)."""
        logits, bbox_reg, ctrness, attentions, bases, sem_logits = predictions
        dense = self._transpose_dense_predictions(
            [logits, bbox_reg, ctrness, attentions],
            [self.num_classes, 4, 1, self.top_layer.attn_len],
        )
        return (*dense, bases, sem_logits)

    def forward_training(self, images, features, predictions, gt_instances):
        logits, deltas, ctrness, attentions, bases, sem_logits = self._split(predictions)
        anchors = self.anchor_generator(features)
        matched = self.match_anchors(anchors, gt_instances)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, matched)
        losses = self.losses(anchors, logits, gt_labels, deltas, gt_boxes, ctrness)
        ctr_targets = self.compute_ctrness_targets(anchors, gt_boxes)  # (N, R)
        loss_mask = self.mask_loss(
            bases, cat(attentions, dim=1), torch.stack(matched), ctr_targets, gt_instances
        )
        losses["loss_mask"] = loss_mask * self.instance_loss_weight
        if sem_logits is not None:
            stride = 2 * self.basis_module.stride  # of its finest input level
            loss = semantic_loss(sem_logits, gt_instances, stride)
            losses["loss_basis_sem"] = loss * self.sem_loss_weight
        return losses

    def mask_loss(self, bases, attentions, matched, ctr_targets, gt_instances):
        """
        Args:
            bases: (N, K, Hb, Wb).
            attentions: (N, R, K*M*M) over all R locations of all levels.
            matched: (N, R) index of each location's GT in its image, -1 for background.
            ctr_targets: (N, R) centerness targets (used at positives only).
            gt_instances: per image, with gt_boxes and gt_masks.
        Returns:
            scalar loss_mask (0 with a graph when there is no positive).
        """
        img, loc = torch.nonzero(matched >= 0, as_tuple=True)
        if len(img) == 0:
            return attentions.sum() * 0 + bases.sum() * 0
        _check_masks(gt_instances)
        counts = torch.tensor([len(x) for x in gt_instances], device=matched.device)
        offsets = torch.cumsum(counts, 0) - counts
        gt_index = matched[img, loc] + offsets[img]  # into all images' instances
        rois = self.blender.pool(bases, [x.gt_boxes for x in gt_instances])[gt_index]
        logits = self.blender.blend(rois, attentions[img, loc])
        targets = mask_targets(gt_instances, self.blender.resolution)[gt_index]
        get_event_storage().put_scalar("blendmask/num_mask_positives", float(len(img)))
        return blender_loss(logits, targets, ctr_targets[img, loc])

    def forward_inference(self, images, features, predictions):
        """
        Returns:
            per image Instances at input resolution with pred_boxes, scores, pred_classes and
            pred_masks (P, 1, R, R) mask probabilities in each box.
        """
        logits, deltas, ctrness, attentions, bases, _ = self._split(predictions)
        anchors = self.anchor_generator(features)
        results = []
        for i, image_size in enumerate(images.image_sizes):
            r = decode_detections(
                anchors,
                [x[i] for x in logits],
                [x[i] for x in deltas],
                [x[i] for x in ctrness],
                [x[i] for x in attentions],
                image_size,
                **self.decode_options(),
            )
            probs = self.blender(bases[i : i + 1], [r.pred_boxes], r.attentions).sigmoid()
            r.remove("attentions")
            r.pred_masks = probs[:, None]
            results.append(r)
        return results

    def _postprocess(self, results, batched_inputs, image_sizes, bases, sem_logits):
        processed = []
        for i, (r, inp, size) in enumerate(zip(results, batched_inputs, image_sizes)):
            height, width = inp.get("height", size[0]), inp.get("width", size[1])
            out = {"instances": detector_postprocess(r, height, width)}
            if self.visualize:
                out["bases"] = bases[i]
                if sem_logits is not None:
                    up = torch.nn.functional.interpolate(
                        sem_logits[i : i + 1],
                        scale_factor=self.basis_module.stride * 2,
                        mode="bilinear",
                        align_corners=False,
                    )[0]
                    out["sem_thing_seg"] = sem_seg_postprocess(up, size, height, width)
            processed.append(out)
        return processed


def _check_masks(gt_instances):
    for gt in gt_instances:
        if len(gt) and not (
            gt.has("gt_masks") and isinstance(gt.gt_masks, (BitMasks, PolygonMasks))
        ):
            raise ConfigError(
                "BlendMask needs instance masks: set MODEL.MASK_ON True and train on a dataset "
                "with segmentation (INPUT.MASK_FORMAT bitmask or polygon)"
            )
