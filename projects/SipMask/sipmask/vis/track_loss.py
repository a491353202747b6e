"""MaskTrack R-CNN's tracking loss, as the official SipMask-VIS trains it."""

import torch
from torch.nn import functional as F

__all__ = ["tracking_loss", "reference_targets", "jitter_boxes"]


def tracking_loss(key_embeds, ref_embeds, targets):
    """
    Cross-entropy of each key-frame vector over [new, reference identity 1, ..., R]: the
    logits are [0, k·r_1, ..., k·r_R].

    Args:
        key_embeds: (P, E) vectors of the key frame's positives.
        ref_embeds: (R, E) vectors of the reference frame's instances.
        targets: (P,) long: 0 where the positive's object is not in the reference frame, else
            1 + its index there.
    Returns:
        scalar mean over the P positives, and (P,) the predicted column (for the accuracy).
    """
    logits = torch.cat(
        [key_embeds.new_zeros(len(key_embeds), 1), key_embeds @ ref_embeds.t()], dim=1
    )
    return F.cross_entropy(logits, targets), logits.argmax(dim=1)


def reference_targets(key_ids, ref_ids):
    """
    Args:
        key_ids: (P,) track ids of the key-frame objects; ref_ids: (R,) of the reference frame.
    Returns:
        (P,) long: 1 + the index of each key object in the reference frame, 0 where absent.
    """
    eq = key_ids[:, None] == ref_ids[None, :]
    return torch.where(eq.any(dim=1), eq.float().argmax(dim=1) + 1, torch.zeros_like(key_ids))


def jitter_boxes(boxes, amplitude, generator=None):
    """
    The official jitter of the reference boxes: centre moved by U(-a, a) x (w, h) and width
    and height scaled by 1 + U(-a, a), each drawn per box and axis.

    Args:
        boxes: (R, 4) XYXY; amplitude: a (official 0.05).
    Returns:
        (R, 4) XYXY.
    """
    offsets = torch.empty(len(boxes), 4, device=boxes.device).uniform_(
        -amplitude, amplitude, generator=generator
    )
    ctr = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = (boxes[:, 2:] - boxes[:, :2]).abs()
    ctr = ctr + wh * offsets[:, :2]
    wh = wh * (1 + offsets[:, 2:])
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)
