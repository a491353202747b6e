"""Matrix NMS (SOLOv2, Wang et al. 2020, Sec. 4): parallel soft-NMS decay of mask scores."""

import torch

__all__ = ["matrix_nms"]


def matrix_nms(masks, labels, scores, kernel="gaussian", sigma=2.0, areas=None):
    """
    Decay every mask's score by its overlap with higher-scored masks of the same class.

    For masks sorted by score (highest first), mask j's decay factor is

        decay_j = min_{i < j} f(iou_ij) / f(comp_i),   comp_i = max_{k < i} iou_ki

    over masks i, k of j's class (a min over an empty set is 1), with f(x) = exp(-sigma x^2)
    ("gaussian") or 1 - x ("linear"). The highest-scored mask of a class is never decayed.

    Args:
        masks (Tensor[M, H, W]): binary masks (bool or 0/1), any order.
        labels (Tensor[M]): class of each mask.
        scores (Tensor[M]): score of each mask.
        kernel (str): "gaussian" or "linear".
        sigma (float): the Gaussian kernel's sigma (unused by "linear").
        areas (Tensor[M] or None): pixels of each mask (computed when None).

    Returns:
        Tensor[M]: the decayed scores, in the input order.
    """
    if kernel not in ("gaussian", "linear"):
        raise ValueError(f"Matrix NMS kernel must be 'gaussian' or 'linear', got '{kernel}'")
    num = len(scores)
    if num == 0:
        return scores.clone()
    order = scores.argsort(descending=True)
    flat = masks[order].reshape(num, -1).float()
    areas = flat.sum(1) if areas is None else areas[order].float()
    inter = flat @ flat.t()  # (M, M)
    union = areas[:, None] + areas[None, :] - inter
    iou = (inter / union.clamp(min=1e-6)).triu(diagonal=1)  # iou[i, j], i scored above j
    sorted_labels = labels[order]
    same = (sorted_labels[:, None] == sorted_labels[None, :]).float().triu(diagonal=1)
    iou = iou * same
    comp = iou.max(0).values[:, None].expand(num, num)  # comp[i, j] = comp_i
    if kernel == "gaussian":
        ratio = torch.exp(-sigma * (iou**2 - comp**2))
    else:
        ratio = (1 - iou) / (1 - comp).clamp(min=1e-6)
    # the min runs over i < j only; entries i >= j are pairs without overlap: ratio 1/f(comp_i)
    # >= 1, and the i = j = 0 entry is exactly 1, so a plain column min equals the formula
    decay = ratio.min(0).values.clamp(max=1.0)
    decayed = torch.empty_like(scores)
    decayed[order] = scores[order] * decay.to(scores.dtype)
    return decayed
