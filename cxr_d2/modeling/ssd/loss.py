"""SSD's matching of default boxes to ground truth, hard negative mining and losses."""

import torch
import torch.nn.functional as F
from detectron2.modeling.matcher import Matcher
from fvcore.nn import smooth_l1_loss

__all__ = ["ssd_match", "hard_negative_mining", "ssd_losses"]


def ssd_match(match_quality_matrix, iou_threshold=0.5):
    """
    SSD's matching: every default box goes to the ground-truth box it overlaps most when that
    IoU is >= `iou_threshold`; then every ground-truth box takes its best default box, whatever
    the IoU (the "best prior" rule; on ties between ground-truth boxes the later one wins).

    Args:
        match_quality_matrix (Tensor[G, R]): IoU of G ground-truth and R default boxes.
        iou_threshold (float): positive threshold.

    Returns:
        matched_idxs (Tensor[R] int64): ground-truth index per default box (0 when unmatched).
        is_positive (Tensor[R] bool): whether each default box is matched.
    """
    num_gt, num_priors = match_quality_matrix.shape
    if num_gt == 0:
        zeros = torch.zeros(num_priors, dtype=torch.int64, device=match_quality_matrix.device)
        return zeros, zeros.bool()
    matcher = Matcher([iou_threshold], [0, 1], allow_low_quality_matches=False)
    matched_idxs, labels = matcher(match_quality_matrix)
    is_positive = labels == 1
    best_prior = match_quality_matrix.argmax(dim=1)  # (G,)
    for g in range(num_gt):  # in order, so a later ground-truth box wins a shared prior
        matched_idxs[best_prior[g]] = g
    is_positive[best_prior] = True
    return matched_idxs, is_positive


def hard_negative_mining(cls_loss, is_positive, neg_pos_ratio=3):
    """
    Per image, keep the negatives with the highest classification loss, at most
    `neg_pos_ratio` per positive (and at most all the negatives).

    Args:
        cls_loss (Tensor[N, R]): per default box classification loss.
        is_positive (Tensor[N, R] bool).
        neg_pos_ratio (int).

    Returns:
        Tensor[N, R] bool: the negatives selected.
    """
    loss = cls_loss.detach().clone()
    loss[is_positive] = -float("inf")
    num_neg = (is_positive.sum(dim=1, keepdim=True) * neg_pos_ratio).clamp(
        max=is_positive.shape[1] - is_positive.sum(dim=1, keepdim=True)
    )  # (N, 1)
    order = loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)  # rank of each default box by loss, 0 = hardest
    return (rank < num_neg) & ~is_positive


def ssd_losses(pred_logits, pred_deltas, gt_classes, gt_deltas, neg_pos_ratio=3, beta=1.0):
    """
    Args:
        pred_logits (Tensor[N, R, K + 1]): class logits, background last.
        pred_deltas (Tensor[N, R, 4]): box deltas (Box2BoxTransform encoding).
        gt_classes (Tensor[N, R] int64): class per default box, K = background.
        gt_deltas (Tensor[N, R, 4]): target deltas (ignored for negatives).
        neg_pos_ratio (int): hard negative mining ratio.
        beta (float): smooth-L1 beta.

    Returns:
        dict: loss_cls (softmax cross entropy over positives and mined negatives) and
        loss_box_reg (smooth L1 over positives), each summed and divided by the number of
        positives in the batch (at least 1).
    """
    num_classes = pred_logits.shape[-1] - 1
    is_positive = gt_classes != num_classes
    num_pos = max(is_positive.sum().item(), 1)
    ce = F.cross_entropy(pred_logits.flatten(0, 1), gt_classes.flatten(), reduction="none")
    ce = ce.view_as(gt_classes)
    negatives = hard_negative_mining(ce, is_positive, neg_pos_ratio)
    loss_cls = ce[is_positive | negatives].sum() / num_pos
    loss_box = smooth_l1_loss(
        pred_deltas[is_positive], gt_deltas[is_positive], beta, reduction="sum"
    )
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box / num_pos}
