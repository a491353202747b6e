"""SipMask (Cao et al., ECCV 2020) on Detectron2's FCOS."""
import logging

import torch
from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from detectron2.structures.boxes import matched_pairwise_iou
from detectron2.utils.events import get_event_storage
from torch.nn import functional as F

from cxr_d2.errors import ConfigError
from cxr_d2.modeling.fcos import FCOS, fcos_config_kwargs
from cxr_d2.modeling.fcos.inference import at_most

from .head import SipMaskHead
from .loss import gt_masks_at_basis, mask_alignment_weighted_loss, per_instance_mask_loss
from .mask_scoring import MaskIoUHead, mask_iou_loss, mask_iou_targets
from .postprocess import crop_split, decode_official, upsample_masks
from .smp import spatial_mask_prediction

__all__ = ["SipMask", "masks_to_output", "paste_masks"]

logger = logging.getLogger(__name__)


def paste_masks(mask_probs, boxes, basis_stride, image_size, output_size, threshold):
    """
    Masks at basis resolution to bool masks at output resolution, zero outside the boxes.
    Only the output pixels inside each box are computed: each is sampled bilinearly from the
    basis-resolution map (pixel centres, edges clamped) at its position in the input.

    Args:
        mask_probs: (P, Hb, Wb) SMP output for the padded input.
        boxes: (P, 4) x1, y1, x2, y2 in output pixels.
        basis_stride: input pixels per basis pixel.
        image_size: (h, w) of the (unpadded) input image.
        output_size: (H, W) of the original image.
        threshold: probability threshold.
    Returns:
        (P, H, W) bool; pixel (x, y) of the output is inside a box when its centre
        (x + 0.5, y + 0.5) is in [x1, x2) x [y1, y2).
    """
    out = torch.zeros((len(mask_probs), *output_size), dtype=torch.bool, device=boxes.device)
    (height, width), (hb, wb) = output_size, mask_probs.shape[-2:]
    # output pixel centre -> normalised basis coordinate (grid_sample, align_corners=False)
    scale_x = image_size[1] / width / basis_stride / wb * 2
    scale_y = image_size[0] / height / basis_stride / hb * 2
    first = torch.ceil(boxes - 0.5).clamp(min=0)  # first pixel whose centre is >= the edge
    first[:, 0::2] = first[:, 0::2].clamp(max=width)
    first[:, 1::2] = first[:, 1::2].clamp(max=height)
    for p, (x0, y0, x1, y1) in enumerate(first.long().tolist()):
        if x0 >= x1 or y0 >= y1:
            continue
        xs = (torch.arange(x0, x1, device=boxes.device, dtype=mask_probs.dtype) + 0.5) * scale_x
        ys = (torch.arange(y0, y1, device=boxes.device, dtype=mask_probs.dtype) + 0.5) * scale_y
        grid = torch.stack(torch.meshgrid(xs - 1, ys - 1, indexing="xy"), dim=-1)  # (h, w, 2)
        probs = F.grid_sample(mask_probs[p][None, None], grid[None], mode="bilinear",
                              padding_mode="border", align_corners=False)  # fmt: skip
        out[p, y0:y1, x0:x1] = probs[0, 0] > threshold
    return out


def masks_to_output(r, image_size, height, width, *, basis_stride, mask_thresh,
                    postprocess="official", mask_paste="official"):
    """
    SipMask's detections at input resolution -> the model's output at (height, width).

    Args:
        r: Instances with pred_boxes (R, 4) XYXY in input pixels, scores, pred_classes,
            mask_probs (R, Hb, Wb) (SMP at basis resolution) and keep_index (arange(R)).
        image_size: (h, w) of the (unpadded) input.
        height, width: the output (original image) size.
        basis_stride: input pixels per basis pixel.
        mask_thresh: mask probability threshold.
        postprocess, mask_paste: MODEL.SIPMASK.POSTPROCESS and MASK_PASTE.
    Returns:
        Instances of (height, width) with pred_boxes, scores, pred_classes and pred_masks
        (R', height, width) bool.
    """
    probs = r.mask_probs
    r.remove("mask_probs")
    if postprocess == "official":
        # boxes scaled as mmdetection rescales them: no clipping, no box dropped
        scale = r.pred_boxes.tensor.new_tensor(
            [width / image_size[1], height / image_size[0]] * 2)
        out = Instances((height, width), pred_boxes=Boxes(r.pred_boxes.tensor * scale),
                        scores=r.scores, pred_classes=r.pred_classes)
        keep = r.keep_index
    else:
        out = detector_postprocess(r, height, width)  # keeps the boxes' order
        keep = out.keep_index
        out.remove("keep_index")
    probs = probs[keep] if len(out) else probs[:0]
    if mask_paste == "official":
        out.pred_masks = upsample_masks(
            probs, (basis_stride * height / image_size[0], basis_stride * width / image_size[1]),
            (height, width), mask_thresh,
        )
    else:
        out.pred_masks = paste_masks(probs, out.pred_boxes.tensor, basis_stride, image_size,
                                     (height, width), mask_thresh)
    return out


def _distance_to_box(anchors, deltas, normalize_by_size):
    """
    mmdetection's `distance2bbox` on Detectron2's FCOS anchors: (x - l, y - t, x + r, y + b)
    around each anchor centre, the distances times the anchor size (the stride) when
    `normalize_by_size`. Unlike `Box2BoxTransformLinear.apply_deltas` no ReLU: a negative
    distance gives an inverted box (the official decoding).

    Args:
        anchors: (R, 4) XYXY; deltas: (R, 4) (l, t, r, b).
    Returns:
        (R, 4) XYXY.
    """
    ctr = (anchors[:, :2] + anchors[:, 2:]) / 2
    if normalize_by_size:
        deltas = deltas * (anchors[:, 2:] - anchors[:, :2]).repeat(1, 2)
    return torch.cat([ctr - deltas[:, :2], ctr + deltas[:, 2:]], dim=1)


@META_ARCH_REGISTRY.register()
class SipMask(FCOS):
    """
    SipMask: FCOS whose head also predicts basis masks (CBM) and, per location, one set of
    coefficients per sub-region of its box (SP) from aligned features (FA). Training adds
    loss_mask (WL); inference adds pred_masks by spatial mask prediction (SMP). SipMask++
    adds a mask-IoU head (loss_mask_iou) whose prediction multiplies the scores.
    """

    @configurable
    def __init__(self, *, grid, weighted_loss=True, mask_loss_weight=1.0, mask_thresh=0.4,
                 max_mask_positives=0, mask_loss_boxes="pred", mask_iou_head=None,
                 mask_iou_loss_weight=10.0, mask_iou_min_iou=0.1, mask_iou_min_gt_area=100.0,
                 postprocess="official", mask_paste="official", **kwargs):
        """
        Args:
            grid: (rows, cols) sub-regions.
            weighted_loss: mask alignment weighting (WL).
            mask_loss_weight: weight of loss_mask.
            mask_thresh: mask probability threshold at inference.
            max_mask_positives: positives per image given a mask loss (0 = all).
            mask_loss_boxes: "pred" (detached predicted boxes, official) or "gt" (matched
                ground-truth boxes) crop the mask loss.
            mask_iou_head: a :class:`MaskIoUHead` (SipMask++ mask scoring) or None.
            mask_iou_loss_weight, mask_iou_min_iou, mask_iou_min_gt_area: see
                :func:`mask_iou_loss`.
            postprocess: "official" (mmdetection's box decoding, scores and NMS) or
                "detectron2" (Detectron2's FCOS inference); see MODEL.SIPMASK.POSTPROCESS.
            mask_paste: "official" (CropSplit on the basis grid, whole-map upsampling) or
                "box" (exact sub-regions, image pixels inside the box sampled); see
                MODEL.SIPMASK.MASK_PASTE.
            kwargs: arguments of :class:`cxr_d2.modeling.FCOS`; `head` a SipMaskHead.
        """
        super().__init__(**kwargs)
        self.grid = tuple(grid)
        self.weighted_loss = weighted_loss
        self.mask_loss_weight = mask_loss_weight
        self.mask_thresh = mask_thresh
        self.max_mask_positives = max_mask_positives
        if mask_loss_boxes not in ("pred", "gt"):
            raise ConfigError(
                f"MODEL.SIPMASK.MASK_LOSS_BOXES is {mask_loss_boxes!r}; use 'pred' or 'gt'"
            )
        self.mask_loss_boxes = mask_loss_boxes
        for key, value, allowed in (("POSTPROCESS", postprocess, ("official", "detectron2")),
                                    ("MASK_PASTE", mask_paste, ("official", "box"))):
            if value not in allowed:
                raise ConfigError(f"MODEL.SIPMASK.{key} is {value!r}; use one of {allowed}")
        self.postprocess = postprocess
        self.mask_paste = mask_paste
        self.mask_iou_head = mask_iou_head
        self.mask_iou_loss_weight = mask_iou_loss_weight
        self.mask_iou_min_iou = mask_iou_min_iou
        self.mask_iou_min_gt_area = mask_iou_min_gt_area
        self.num_basis = self.head.coefficients.out_channels // (self.grid[0] * self.grid[1])

    @classmethod
    def from_config(cls, cfg):
        s = cfg.MODEL.SIPMASK
        if len(s.GRID) != 2 or min(s.GRID) < 1:
            raise ConfigError(f"MODEL.SIPMASK.GRID is {s.GRID}; give (rows, cols), e.g. (2, 2)")
        bad = [k for k in s.BASIS_IN_FEATURES if k not in cfg.MODEL.FCOS.IN_FEATURES]
        if bad or not s.BASIS_IN_FEATURES:
            raise ConfigError(
                f"MODEL.SIPMASK.BASIS_IN_FEATURES {list(s.BASIS_IN_FEATURES)} must be a "
                f"non-empty subset of MODEL.FCOS.IN_FEATURES {list(cfg.MODEL.FCOS.IN_FEATURES)}"
            )
        backbone = build_backbone(cfg)
        kwargs = fcos_config_kwargs(cfg, backbone)
        shapes = backbone.output_shape()
        kwargs["head"] = SipMaskHead(cfg, [shapes[k] for k in cfg.MODEL.FCOS.IN_FEATURES])
        kwargs.update(
            grid=tuple(s.GRID),
            weighted_loss=s.WEIGHTED_LOSS,
            mask_loss_weight=s.MASK_LOSS_WEIGHT,
            mask_thresh=s.MASK_THRESH,
            max_mask_positives=s.MAX_MASK_POSITIVES,
            mask_loss_boxes=s.MASK_LOSS_BOXES,
            postprocess=s.POSTPROCESS,
            mask_paste=s.MASK_PASTE,
        )
        if s.MASK_SCORING.ENABLED:
            kwargs.update(
                mask_iou_head=MaskIoUHead(cfg, kwargs["num_classes"]),
                mask_iou_loss_weight=s.MASK_SCORING.LOSS_WEIGHT,
                mask_iou_min_iou=s.MASK_SCORING.MIN_IOU,
                mask_iou_min_gt_area=s.MASK_SCORING.MIN_GT_AREA,
            )
        return kwargs

    def _split(self, predictions):
        logits, bbox_reg, ctrness, coefficients, basis = predictions
        k = self.grid[0] * self.grid[1] * self.num_basis
        dense = self._transpose_dense_predictions(
            [logits, bbox_reg, ctrness, coefficients], [self.num_classes, 4, 1, k]
        )
        return (*dense, basis)

    def forward(self, batched_inputs):
        """
        As :meth:`DenseDetector.forward`; inference adds `pred_masks` (R, H, W) bool at the
        resolution of each input's "height" and "width".
        """
        if self.training:
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        results = self.forward_inference(images, features, self.head(features))
        processed = []
        for r, inp, image_size in zip(results, batched_inputs, images.image_sizes):
            height = inp.get("height", image_size[0])
            width = inp.get("width", image_size[1])
            processed.append({"instances": self._to_output(r, image_size, height, width)})
        return processed

    def _to_output(self, r, image_size, height, width):
        """Instances at input resolution (with mask_probs, keep_index) -> at (height, width),
        with pred_masks (R, height, width) bool (:func:`masks_to_output`)."""
        return masks_to_output(r, image_size, height, width, basis_stride=self._basis_stride,
                               mask_thresh=self.mask_thresh, postprocess=self.postprocess,
                               mask_paste=self.mask_paste)  # fmt: skip

    def forward_inference(self, images, features, predictions):
        """
        Returns:
            per image Instances at input resolution with pred_boxes, scores, pred_classes,
            mask_probs (R, Hb, Wb) (SMP at basis resolution) and keep_index (arange(R)).
            With the mask-IoU head, scores are multiplied by the predicted mask IoU.
        """
        pred_logits, pred_deltas, pred_ctr, pred_coeffs, basis = self._split(predictions)
        anchors = self.anchor_generator(features)
        self._basis_stride = images.tensor.shape[-1] // basis.shape[-1]
        results = []
        for i, image_size in enumerate(images.image_sizes):
            if self.postprocess == "official":
                r = self._decode_official(anchors, [x[i] for x in pred_logits],
                                          [x[i] for x in pred_deltas], [x[i] for x in pred_ctr],
                                          [x[i] for x in pred_coeffs], image_size)
            else:
                scores = [torch.sqrt(x[i].sigmoid() * y[i].sigmoid()) for x, y in
                          zip(pred_logits, pred_ctr)]
                r = self._decode_with_coefficients(
                    anchors, scores, [x[i] for x in pred_deltas], [x[i] for x in pred_coeffs],
                    image_size,
                )
            c = r.coefficients.view(-1, self.grid[0] * self.grid[1], self.num_basis)
            smp = crop_split if self.mask_paste == "official" else spatial_mask_prediction
            r.mask_probs = smp(basis[i], c, r.pred_boxes.tensor / self._basis_stride, self.grid)
            r.remove("coefficients")
            if self.mask_iou_head is not None:
                r.scores = r.scores * self.mask_iou_head(r.mask_probs, r.pred_classes)
            r.keep_index = torch.arange(r.scores.shape[0], device=basis.device)
            results.append(r)
        return results

    def _decode_official(self, anchors, logits, deltas, ctrness, coeffs, image_size):
        """
        The official `get_bboxes_single` (:func:`decode_official`) on one image.

        Args:
            anchors: per level Boxes (Ri); logits (Ri, K), deltas (Ri, 4), ctrness (Ri, 1),
                coeffs (Ri, rows*cols*m): per level, this image's.
            image_size: (h, w) of the input; boxes are clamped to [0, w - 1] x [0, h - 1].
        Returns:
            Instances with pred_boxes, scores, pred_classes, coefficients.
        """
        h, w = image_size
        boxes = []
        for a, d in zip(anchors, deltas):
            b = _distance_to_box(a.tensor, d, self.box2box_transform.normalize_by_size)
            boxes.append(torch.stack([b[:, 0].clamp(0, w - 1), b[:, 1].clamp(0, h - 1),
                                      b[:, 2].clamp(0, w - 1), b[:, 3].clamp(0, h - 1)], dim=1))
        boxes, scores, classes, loc = decode_official(
            [x.sigmoid() for x in logits], [x[:, 0].sigmoid() for x in ctrness], boxes,
            self.test_score_thresh, self.test_topk_candidates, self.test_nms_thresh,
            self.max_detections_per_image,
        )
        return Instances(image_size, pred_boxes=Boxes(boxes), scores=scores,
                         pred_classes=classes, coefficients=cat(coeffs)[loc])

    def _decode_with_coefficients(self, anchors, scores, deltas, coeffs, image_size):
        """Detectron2's per-level decoding (threshold, top-k, boxes), keeping each kept
        location's coefficients; then class-wise NMS and the top detections."""
        per_level = []
        for anchors_i, scores_i, deltas_i, coeffs_i in zip(anchors, scores, deltas, coeffs):
            keep = scores_i > self.test_score_thresh
            values = scores_i[keep]
            idxs = torch.nonzero(keep)
            values, order = values.sort(descending=True)
            num = at_most(order, self.test_topk_candidates)
            values, idxs = values[:num], idxs[order[:num]]
            loc, cls = idxs.unbind(dim=1)
            boxes = self.box2box_transform.apply_deltas(deltas_i[loc], anchors_i.tensor[loc])
            per_level.append(Instances(image_size, pred_boxes=Boxes(boxes), scores=values,
                                       pred_classes=cls, coefficients=coeffs_i[loc]))
        r = Instances.cat(per_level)
        keep = batched_nms(r.pred_boxes.tensor, r.scores, r.pred_classes, self.test_nms_thresh)
        return r[keep[: self.max_detections_per_image]]

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_deltas, pred_ctr, pred_coeffs, basis = self._split(predictions)
        anchors = self.anchor_generator(features)
        matched = self.match_anchors(anchors, gt_instances)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances, matched)
        losses = self.losses(anchors, pred_logits, gt_labels, pred_deltas, gt_boxes, pred_ctr)
        loss_mask, iou_inputs = self.mask_loss(
            images.tensor.shape[-2:], anchors, matched, gt_instances,
            cat(pred_logits, dim=1), cat(pred_deltas, dim=1), cat(pred_coeffs, dim=1), basis,
        )
        losses["loss_mask"] = loss_mask * self.mask_loss_weight
        if self.mask_iou_head is not None:
            losses["loss_mask_iou"] = self.mask_iou_loss(*iou_inputs) * self.mask_iou_loss_weight
        return losses

    def mask_iou_loss(self, probs, targets, classes):
        """
        Args:
            probs: (P, Hb, Wb) SMP masks of the positives (detached); targets: (P, Hb, Wb)
                their ground truths at basis resolution; classes: (P,) their gt classes.
        Returns:
            scalar loss of the mask-IoU head (:func:`mask_iou_loss`).
        """
        if len(probs) == 0:
            return sum(p.sum() for p in self.mask_iou_head.parameters()) * 0
        pred = self.mask_iou_head(probs, classes)
        target = mask_iou_targets(probs, targets, self.mask_thresh)
        get_event_storage().put_scalar("sipmask/mask_iou_target", target.mean().item())
        return mask_iou_loss(pred, target, targets.sum(dim=(1, 2)), self.mask_iou_min_iou,
                             self.mask_iou_min_gt_area)

    def mask_loss(self, padded_size, anchors, matched, gt_instances, logits, deltas, coeffs,
                  basis):
        """
        Args:
            padded_size: (H, W) of the batched input.
            anchors: per level Boxes; matched: per image (R,) gt index or -1.
            gt_instances: per image, with gt_boxes, gt_classes, gt_masks.
            logits: (N, R, K); deltas: (N, R, 4); coeffs: (N, R, rows*cols*m);
            basis: (N, m, Hb, Wb).
        Returns:
            scalar loss_mask (WL-weighted or plain BCE), and the inputs of
            :meth:`mask_iou_loss` (probs, targets, classes; empty without the mask-IoU head).
        """
        anchors = Boxes.cat(anchors).tensor
        stride = padded_size[-1] // basis.shape[-1]
        losses, ious, scores = [], [], []
        iou_inputs = ([], [], [])  # SMP masks (detached), their targets and classes
        for i, (gt, idx) in enumerate(zip(gt_instances, matched)):
            pos = torch.nonzero(idx >= 0).squeeze(1)
            if len(pos) == 0:
                continue
            gt_idx = idx[pos]
            score = logits[i, pos, gt.gt_classes[gt_idx]].detach().sigmoid()
            if 0 < self.max_mask_positives < len(pos):
                keep = score.topk(self.max_mask_positives).indices
                pos, gt_idx, score = pos[keep], gt_idx[keep], score[keep]
            boxes = self.box2box_transform.apply_deltas(deltas[i, pos], anchors[pos]).detach()
            if not gt.has("gt_masks"):
                raise ValueError("SipMask needs instance masks: set INPUT.MASK_FORMAT and use a "
                                 "dataset with segmentation")
            masks = gt.gt_masks.tensor if hasattr(gt.gt_masks, "tensor") else None
            if masks is None:
                raise ValueError("SipMask expects gt_masks as BitMasks (INPUT.MASK_FORMAT bitmask)")
            targets = gt_masks_at_basis(masks, padded_size, stride)[gt_idx]
            c = coeffs[i, pos].view(len(pos), self.grid[0] * self.grid[1], self.num_basis)
            crop = gt.gt_boxes.tensor[gt_idx] if self.mask_loss_boxes == "gt" else boxes
            loss, probs = per_instance_mask_loss(basis[i], c, crop / stride, targets, self.grid,
                                                 return_probs=True)
            losses.append(loss)
            if self.mask_iou_head is not None:
                for store, x in zip(iou_inputs, (probs.detach(), targets, gt.gt_classes[gt_idx])):
                    store.append(x)
            ious.append(matched_pairwise_iou(Boxes(boxes), gt.gt_boxes[gt_idx]))
            scores.append(score)
        hb, wb = basis.shape[-2:]
        iou_inputs = (
            cat(iou_inputs[0]) if iou_inputs[0] else basis.new_zeros((0, hb, wb)),
            cat(iou_inputs[1]) if iou_inputs[1] else basis.new_zeros((0, hb, wb)),
            cat(iou_inputs[2]) if iou_inputs[2] else torch.zeros(0, dtype=torch.long),
        )
        if not losses:
            return basis.sum() * 0, iou_inputs
        losses, ious, scores = cat(losses), cat(ious), cat(scores)
        get_event_storage().put_scalar("sipmask/mask_iou_weight", (ious * scores).mean().item())
        return mask_alignment_weighted_loss(losses, ious, scores, self.weighted_loss), iou_inputs
