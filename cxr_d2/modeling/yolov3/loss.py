"""YOLOv3's losses: objectness and classes with BCE, boxes the original way or with GIoU."""
import torch.nn.functional as F
from fvcore.nn import giou_loss

__all__ = ["yolov3_losses"]


def yolov3_losses(raw, pred_boxes, targets, gt_boxes, box_loss="yolo", weights=(1.0, 1.0, 1.0)):
    """
    Args:
        raw (Tensor[N, R, 5 + K]): head outputs (tx, ty, tw, th, objectness, class logits).
        pred_boxes (Tensor[N, R, 4]): `raw` decoded (XYXY_ABS), used by the GIoU loss.
        targets (dict of Tensor[N, ...]): `build_yolo_targets` per image, stacked, plus
            `ignore` (Tensor[N, R] bool) from `ignore_mask`.
        gt_boxes (Tensor[N, R, 4]): matched ground-truth box where positive (any elsewhere).
        box_loss (str): "yolo": BCE on the centre offsets + squared error on (tw, th), weighted
            by 2 - w*h/area; "giou": 1 - GIoU of the decoded boxes.
        weights (tuple): (box, objectness, classification) loss weights.

    Returns:
        dict: loss_box_reg, loss_obj, loss_cls, each summed and divided by the number of
        positives in the batch (at least 1). With no ground truth only loss_obj is non-zero.
    """
    pos = targets["positive"]
    num_pos = max(pos.sum().item(), 1)
    p = raw[pos]  # (P, 5 + K)
    if box_loss == "yolo":
        t, w = targets["box_target"][pos], targets["box_weight"][pos]
        xy = F.binary_cross_entropy_with_logits(p[:, :2], t[:, :2], reduction="none").sum(dim=1)
        wh = (p[:, 2:4] - t[:, 2:4]).pow(2).sum(dim=1)
        loss_box = ((xy + wh) * w).sum()
    elif box_loss == "giou":
        loss_box = giou_loss(pred_boxes[pos], gt_boxes[pos], reduction="sum")
    else:
        raise ValueError(f"MODEL.YOLOV3.BOX_LOSS is '{box_loss}'; use 'yolo' or 'giou'")
    obj_target = pos.to(raw.dtype)
    obj_weight = (pos | ~targets["ignore"]).to(raw.dtype)
    loss_obj = (
        F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="none") * obj_weight
    ).sum()
    loss_cls = F.binary_cross_entropy_with_logits(
        p[:, 5:], targets["class_target"][pos], reduction="sum"
    )
    return {
        "loss_box_reg": weights[0] * loss_box / num_pos,
        "loss_obj": weights[1] * loss_obj / num_pos,
        "loss_cls": weights[2] * loss_cls / num_pos,
    }
