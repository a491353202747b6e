"""
Matching detections to stored identities between frames, as MaskTrack R-CNN (Yang et al.,
ICCV 2019) and the official SipMask-VIS code do it (`compute_comp_scores`, `get_bboxes`).
"""

from typing import Optional, Sequence

import torch
from detectron2.structures import Boxes, pairwise_iou
from torch.nn import functional as F

__all__ = ["comprehensive_scores", "assign_ids", "TrackMemory"]


def comprehensive_scores(embeds, memory_embeds, scores, ious, same_label, weights: Sequence[float]):
    """
    The matching score of each detection against "new" (column 0) and each stored identity
    (columns 1..M): log softmax over [0, e·m_1, ..., e·m_M], plus w_score * log(score) (the
    same for a whole row), w_iou * box IoU (0 for "new") and w_label * same class (1 for
    "new").

    Args:
        embeds: (D, E) the detections' tracking vectors; memory_embeds: (M, E) the stored ones.
        scores: (D,) detection scores in (0, 1].
        ious: (D, M) box IoU with the stored boxes; same_label: (D, M) 1 where the classes agree.
        weights: (w_score, w_iou, w_label); official [1.0, 2.0, 10.0].
    Returns:
        (D, 1 + M).
    """
    sim = embeds @ memory_embeds.t()
    logprob = F.log_softmax(torch.cat([sim.new_zeros(len(sim), 1), sim], dim=1), dim=1)
    ious = torch.cat([ious.new_zeros(len(ious), 1), ious], dim=1)
    same = torch.cat([same_label.new_ones(len(same_label), 1), same_label.float()], dim=1)
    w_score, w_iou, w_label = weights
    return logprob + w_score * torch.log(scores)[:, None] + w_iou * ious + w_label * same


def assign_ids(comp):
    """
    Each detection takes its best column: 0 is a new identity, j >= 1 stored identity j - 1.
    Where several detections take one identity, the one whose comprehensive score is highest
    keeps it (the first of equal ones) and the others get -1: the official loop's outcome
    (its output and memory keep the best of them; the others are dropped or overwritten).

    Args:
        comp: (D, 1 + M) from :func:`comprehensive_scores`.
    Returns:
        (D,) long: the stored identity index, -1 for a lost conflict, -2 for "new".
    """
    best, choice = comp.max(dim=1)
    out = torch.full((len(comp),), -1, dtype=torch.long, device=comp.device)
    owner = {}
    for d, (c, s) in enumerate(zip(choice.tolist(), best.tolist())):
        if c == 0:
            out[d] = -2
        elif c - 1 not in owner or s > owner[c - 1][1]:
            if c - 1 in owner:
                out[owner[c - 1][0]] = -1
            owner[c - 1] = (d, s)
            out[d] = c - 1
    return out


class TrackMemory:
    """
    The identities seen so far in one sequence: a tracking vector, a box and a class per
    identity. The first frame's detections each open one; later, :func:`assign_ids` decides,
    a matched identity takes the detection's vector and box (its class stays the first one),
    and each "new" detection opens one. Identities are never forgotten within a sequence.
    """

    def __init__(self, weights: Sequence[float]):
        """weights: (w_score, w_iou, w_label) of :func:`comprehensive_scores`."""
        self.weights = tuple(weights)
        self.reset()

    def reset(self):
        """Forget every identity (a new sequence starts)."""
        self.embeds: Optional[torch.Tensor] = None
        self.boxes: Optional[torch.Tensor] = None
        self.labels: Optional[torch.Tensor] = None

    def __len__(self):
        return 0 if self.embeds is None else len(self.embeds)

    def update(self, embeds, boxes, scores, labels):
        """
        Match one frame's detections and update the memory.

        Args:
            embeds: (D, E); boxes: (D, 4) XYXY, in the same pixels every frame; scores: (D,);
            labels: (D,) classes.
        Returns:
            (D,) long: each detection's identity (0, 1, ... in order of appearance), -1 for a
            detection that lost its identity to a better one (drop it).
        """
        if len(embeds) == 0:
            return torch.zeros(0, dtype=torch.long, device=embeds.device)
        if not len(self):
            self.embeds, self.boxes, self.labels = embeds.clone(), boxes.clone(), labels.clone()
            return torch.arange(len(embeds), device=embeds.device)
        comp = comprehensive_scores(
            embeds,
            self.embeds,
            scores,
            pairwise_iou(Boxes(boxes), Boxes(self.boxes)),
            labels[:, None] == self.labels[None, :],
            self.weights,
        )
        ids = assign_ids(comp)
        matched = ids >= 0
        self.embeds[ids[matched]] = embeds[matched]
        self.boxes[ids[matched]] = boxes[matched]
        new = torch.nonzero(ids == -2).squeeze(1)
        ids[new] = torch.arange(len(self), len(self) + len(new), device=ids.device)
        self.embeds = torch.cat([self.embeds, embeds[new]])
        self.boxes = torch.cat([self.boxes, boxes[new]])
        self.labels = torch.cat([self.labels, labels[new]])
        return ids
