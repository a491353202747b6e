"""
FCOS inference as AdelaiDet's `FCOSOutputs.predict_proposals`: per level threshold, top-k by
the product score, boxes, class-wise NMS over all levels, the best per image.
"""

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances
from torch.nn import functional as F

__all__ = ["at_most", "fcos_detections", "keep_top_scores"]


def at_most(tensor, k):
    """
    min(k, len(tensor)): an int, or under `torch.jit.trace` a 0-dim tensor computed from
    the traced shape, so that an exported graph keeps the count dynamic instead of freezing
    the sample's.
    """
    num = tensor.shape[0]
    return torch.clamp(num, max=k) if isinstance(num, torch.Tensor) else min(num, k)


def _select_level(logits, ctrness, score_thresh, topk_candidates, thresh_with_ctr):
    """
    Args:
        logits: (R, C) class logits of one level; ctrness: (R, 1) centerness logits.
    Returns:
        scores (P,) sigmoid(class) * sigmoid(centerness), locations (P,), classes (P,) of the
        (location, class) pairs whose sigmoid(class) (thresh_with_ctr False) or product
        (True) exceeds `score_thresh`, the `topk_candidates` best by the product, best first.
    """
    cls = logits.sigmoid()
    prob = cls * ctrness.sigmoid()
    keep = (prob if thresh_with_ctr else cls) > score_thresh
    scores, idxs = prob[keep], torch.nonzero(keep)
    scores, order = scores.sort(descending=True)
    num = at_most(order, topk_candidates)
    loc, classes = idxs[order[:num]].unbind(dim=1)
    return scores[:num], loc, classes


def keep_top_scores(scores, max_detections):
    """
    Indices of the detections kept per image, as AdelaiDet: all of them when there are at most
    `max_detections` (or it is <= 0), else those scoring at least the `max_detections`-th best
    score (ties at that score are all kept).

    Args:
        scores: (P,).
    Returns:
        (Q,) long indices into `scores`, in their order.
    """
    if max_detections <= 0:
        return torch.arange(scores.shape[0], device=scores.device)
    # the max_detections-th best score, or the lowest float (keep all) when there are fewer
    lowest = torch.finfo(scores.dtype).min
    ranked = F.pad(scores.sort(descending=True).values, (0, 1), value=lowest)  # (P + 1,)
    thresh = ranked[at_most(scores, max_detections - 1)]
    return torch.nonzero(scores >= thresh).squeeze(1)


def fcos_detections(
    anchors,
    logits,
    deltas,
    ctrness,
    image_size,
    *,
    box2box_transform,
    score_thresh,
    topk_candidates,
    nms_thresh,
    max_detections,
    thresh_with_ctr=False,
    clip_before_nms=False,
    extras=None,
):
    """
    One image's detections by AdelaiDet's rule (:func:`_select_level` per level, class-wise
    NMS over all levels, :func:`keep_top_scores`). Scores are sqrt(sigmoid(class) *
    sigmoid(centerness)).

    Args:
        anchors: per level Boxes (Ri, 4) of the locations (stride-sized, centred on them).
        logits: per level (Ri, C); deltas: per level (Ri, 4) (l, t, r, b) in strides;
        ctrness: per level (Ri, 1).
        image_size: (h, w) of the input image (unpadded).
        clip_before_nms: clip the boxes to the image before NMS (AdelaiDet does not; its
            `detector_postprocess` clips the final boxes).
        extras: {name: per level (Ri, D)} per-location fields to carry to the detections.
    Returns:
        Instances with pred_boxes (XYXY, input pixels), scores, pred_classes, and `extras`.
    """
    extras = extras or {}
    per_level = []
    for level, (anchors_i, logits_i, deltas_i, ctr_i) in enumerate(
        zip(anchors, logits, deltas, ctrness)
    ):
        scores, loc, classes = _select_level(
            logits_i, ctr_i, score_thresh, topk_candidates, thresh_with_ctr
        )
        boxes = Boxes(box2box_transform.apply_deltas(deltas_i[loc], anchors_i.tensor[loc]))
        if clip_before_nms:
            boxes.clip(image_size)
        fields = {name: values[level][loc] for name, values in extras.items()}
        per_level.append(
            Instances(
                image_size, pred_boxes=boxes, scores=scores.sqrt(), pred_classes=classes, **fields
            )
        )
    r = Instances.cat(per_level)
    r = r[batched_nms(r.pred_boxes.tensor, r.scores, r.pred_classes, nms_thresh)]
    return r[keep_top_scores(r.scores, max_detections)]
