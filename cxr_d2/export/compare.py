"""
`compare_instances`: do two sets of detections (an exported model's and PyTorch's) agree?
Detections are paired in score order; where scores tie within `score_atol` the order between
the tied ones is free (two runtimes may sort equal scores differently), so each detection is
paired with the unpaired one of equal class and score whose box is nearest.
"""
from dataclasses import dataclass, field
from typing import List

import torch

__all__ = ["InstancesComparison", "compare_instances"]


@dataclass
class InstancesComparison:
    """The outcome: counts, worst differences over the pairs, and what failed (empty if ok)."""

    count_a: int
    count_b: int
    max_box_diff: float = 0.0  # px, max |a - b| over the 4 coordinates of paired boxes
    max_score_diff: float = 0.0
    masks: int = 0  # pairs of pasted masks compared
    min_mask_iou: float = 1.0  # over paired pasted masks; 1.0 when there are none
    mask_pixels_differ: int = 0  # pixels set in one pasted mask of a pair and not the other
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def __str__(self):
        masks = (f", {self.masks} masks: min IoU {self.min_mask_iou:.4f}, "
                 f"{self.mask_pixels_differ} pixels differ") if self.masks else ""
        head = (f"{self.count_a} vs {self.count_b} detections, max box diff "
                f"{self.max_box_diff:.2e} px, max score diff {self.max_score_diff:.2e}{masks}")
        return head + ("" if self.ok else ": " + "; ".join(self.problems))


def compare_instances(a, b, box_atol=1e-3, score_atol=1e-4, mask_iou=0.99):
    """
    Compare Instances `a` and `b` of the same image and frame (pred_boxes, scores,
    pred_classes, optional pred_masks (R, H, W) bool).

    Requires: equal counts; every detection of `a` paired with one of `b` of the same class,
    score within `score_atol` and every box coordinate within `box_atol` pixels; pasted masks of
    each pair with IoU >= `mask_iou`. Returns an InstancesComparison (`.ok`, `.problems`).
    """
    out = InstancesComparison(len(a), len(b))
    if len(a) != len(b):
        out.problems.append(f"{len(a)} detections against {len(b)}")
        return out
    pairs = _pair(a, b, score_atol)
    if len(pairs) < len(a):
        out.problems.append(f"{len(a) - len(pairs)} detections have no counterpart of the same "
                            f"class with a score within {score_atol}")
    if not pairs:
        return out
    ia, ib = (torch.tensor(p) for p in zip(*pairs))
    box = (a.pred_boxes.tensor[ia] - b.pred_boxes.tensor[ib]).abs()
    out.max_box_diff = float(box.max())
    out.max_score_diff = float((a.scores[ia] - b.scores[ib]).abs().max())
    if out.max_box_diff > box_atol:
        out.problems.append(f"boxes differ by up to {out.max_box_diff:.3g} px > {box_atol}")
    if a.has("pred_masks") != b.has("pred_masks"):
        out.problems.append("only one side has pred_masks")
    elif a.has("pred_masks"):
        _compare_masks(a.pred_masks[ia].bool(), b.pred_masks[ib].bool(), mask_iou, out)
    return out


def _pair(a, b, score_atol):
    """Index pairs (i, j): for each i in a's order, the unpaired j of b with the same class and
    a score within score_atol whose box is nearest (max abs coordinate difference)."""
    free = torch.ones(len(b), dtype=torch.bool)
    boxes_b = b.pred_boxes.tensor
    pairs = []
    for i in range(len(a)):
        ok = free & (b.pred_classes == a.pred_classes[i])
        ok &= (b.scores - a.scores[i]).abs() <= score_atol
        if not ok.any():
            continue
        dist = (boxes_b - a.pred_boxes.tensor[i]).abs().max(dim=1).values
        j = int(torch.where(ok, dist, torch.full_like(dist, float("inf"))).argmin())
        free[j] = False
        pairs.append((i, j))
    return pairs


def _compare_masks(ma, mb, min_iou, out):
    """ma, mb: (P, H, W) bool masks of the P pairs."""
    out.masks = len(ma)
    inter = (ma & mb).flatten(1).sum(1)
    union = (ma | mb).flatten(1).sum(1)
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones(len(union)))
    out.min_mask_iou = float(iou.min())
    out.mask_pixels_differ = int((ma ^ mb).sum())
    if out.min_mask_iou < min_iou:
        out.problems.append(f"a pasted mask pair has IoU {out.min_mask_iou:.4f} < {min_iou}")
