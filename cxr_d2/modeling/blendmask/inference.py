"""BlendMask's detections: FCOS decoding that keeps each detection's attentions."""

import torch
from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

__all__ = ["decode_detections"]


def decode_detections(
    anchors,
    logits,
    deltas,
    ctrness,
    attentions,
    image_size,
    *,
    box2box_transform,
    score_thresh,
    topk_candidates,
    nms_thresh,
    max_detections,
    thresh_with_ctr
):
    """
    One image's FCOS detections with their attentions, as AdelaiDet's FCOS: per level the
    locations whose sigmoid(class) (THRESH_WITH_CTR False) or sigmoid(class) *
    sigmoid(centerness) (True) exceeds `score_thresh`, the `topk_candidates` best by
    the product; boxes decoded and clipped to the image; class-wise NMS; the
    `max_detections` best. Scores are sqrt(sigmoid(class) * sigmoid(centerness)).

    Args:
        anchors: per level Boxes (Ri, 4) of the locations.
        logits: per level (Ri, C); deltas: per level (Ri, 4); ctrness: per level (Ri, 1);
        attentions: per level (Ri, K*M*M).
        image_size: (h, w) of the input image (unpadded).
    Returns:
        Instances with pred_boxes (XYXY, input pixels), scores, pred_classes, attentions.
    """
    per_level = []
    for anchors_i, logits_i, deltas_i, ctr_i, attn_i in zip(
        anchors, logits, deltas, ctrness, attentions
    ):
        cls = logits_i.sigmoid()
        prob = cls * ctr_i.sigmoid()
        keep = (prob if thresh_with_ctr else cls) > score_thresh
        values, idxs = prob[keep], torch.nonzero(keep)
        values, order = values.sort(descending=True)
        num = min(topk_candidates, len(order))
        values, idxs = values[:num], idxs[order[:num]]
        loc, cls_idx = idxs.unbind(dim=1)
        boxes = Boxes(box2box_transform.apply_deltas(deltas_i[loc], anchors_i.tensor[loc]))
        boxes.clip(image_size)
        per_level.append(
            Instances(
                image_size,
                pred_boxes=boxes,
                scores=values.sqrt(),
                pred_classes=cls_idx,
                attentions=attn_i[loc],
            )
        )
    r = Instances.cat(per_level)
    keep = batched_nms(r.pred_boxes.tensor, r.scores, r.pred_classes, nms_thresh)
    return r[keep[:max_detections]]
