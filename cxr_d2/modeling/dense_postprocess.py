"""Per-image selection and class-wise NMS shared by the dense detectors (SSD, YOLOv3)."""

from detectron2.layers import batched_nms
from detectron2.structures import Boxes, Instances

__all__ = ["select_and_nms"]


def select_and_nms(scores, boxes, image_size, score_thresh, topk_candidates, nms_thresh,
                   max_detections):
    """
    (prediction, class) pairs scoring above `score_thresh`, the best `topk_candidates` of
    them over all levels, boxes clipped to the image, class-wise NMS, the best
    `max_detections`.

    Args:
        scores (Tensor[R, K]): per prediction and foreground class.
        boxes (Tensor[R, 4]): XYXY_ABS in input pixels.
        image_size ((h, w)): size before padding.

    Returns:
        Instances with pred_boxes, scores, pred_classes (input pixels).
    """
    idx, classes = (scores > score_thresh).nonzero(as_tuple=True)
    kept = scores[idx, classes]
    if kept.numel() > topk_candidates:
        kept, order = kept.topk(topk_candidates)
        idx, classes = idx[order], classes[order]
    pred = Boxes(boxes[idx])
    pred.clip(image_size)
    keep = batched_nms(pred.tensor, kept, classes, nms_thresh)[:max_detections]
    result = Instances(image_size)
    result.pred_boxes = pred[keep]
    result.scores = kept[keep]
    result.pred_classes = classes[keep]
    return result
