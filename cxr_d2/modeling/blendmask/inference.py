"""BlendMask's detections: FCOS decoding (AdelaiDet's rule) that keeps each detection's attentions."""

from ..fcos.inference import fcos_detections

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
    thresh_with_ctr,
    clip_before_nms=False,
):
    """
    One image's FCOS detections with their attentions, as AdelaiDet's FCOS
    (:func:`cxr_d2.modeling.fcos.inference.fcos_detections`): per level the locations whose
    sigmoid(class) (THRESH_WITH_CTR False) or sigmoid(class) * sigmoid(centerness) (True)
    exceeds `score_thresh`, the `topk_candidates` best by the product; boxes decoded, not
    clipped (AdelaiDet runs NMS and the blender on the unclipped boxes) unless
    `clip_before_nms`; class-wise NMS; the `max_detections` best. Scores are
    sqrt(sigmoid(class) * sigmoid(centerness)).

    Args:
        anchors: per level Boxes (Ri, 4) of the locations.
        logits: per level (Ri, C); deltas: per level (Ri, 4); ctrness: per level (Ri, 1);
        attentions: per level (Ri, K*M*M).
        image_size: (h, w) of the input image (unpadded).
    Returns:
        Instances with pred_boxes (XYXY, input pixels), scores, pred_classes, attentions.
    """
    return fcos_detections(
        anchors,
        logits,
        deltas,
        ctrness,
        image_size,
        box2box_transform=box2box_transform,
        score_thresh=score_thresh,
        topk_candidates=topk_candidates,
        nms_thresh=nms_thresh,
        max_detections=max_detections,
        thresh_with_ctr=thresh_with_ctr,
        clip_before_nms=clip_before_nms,
        extras={"attentions": attentions},
    )
