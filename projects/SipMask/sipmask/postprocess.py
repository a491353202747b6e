"""
The official SipMask inference (mmdetection 1.x `SipMaskHead.get_bboxes_single`, its
`multiclass_nms_idx`, the CPU `nms` and the `CropSplit` op), on Detectron2's tensors:
MODEL.SIPMASK.POSTPROCESS "official" and MASK_PASTE "official".
"""
import numpy as np
import torch
from torch.nn import functional as F
from torchvision.ops import nms

__all__ = ["crop_split", "decode_official", "nms_plus_one", "upsample_masks"]


def nms_plus_one(boxes, scores, threshold):
    """
    mmdetection 1.x's CPU NMS (`nms_cpu.cpp`): areas (x2 - x1 + 1)(y2 - y1 + 1), a box is
    suppressed by a higher-scored kept one when IoU >= `threshold`. Run as torchvision's NMS
    (exportable: ONNX NonMaxSuppression) on the boxes grown by one pixel to the right and
    bottom, which gives those areas and intersections, with the threshold lowered to the next
    float32 below it (torchvision suppresses at IoU > threshold). A box with x2 - x1 + 1 <= 0 or
    y2 - y1 + 1 <= 0 (the official decoding may invert a box) intersects nothing, as in
    `nms_cpu`: it becomes an empty box, which onnxruntime's NMS, unlike torchvision's, would
    otherwise reorder into a proper one.

    Args:
        boxes: (R, 4) XYXY; scores: (R,).
    Returns:
        (K,) int64 indices of the kept boxes, in increasing index order (as nms_cpu).
    """
    x1, y1, x2, y2 = boxes.float().unbind(dim=1)
    x2, y2 = x2 + 1, y2 + 1
    empty = (x2 <= x1) | (y2 <= y1)
    grown = torch.stack([x1, y1, torch.where(empty, x1, x2), torch.where(empty, y1, y2)], dim=1)
    below = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    return nms(grown, scores.float(), below).sort().values


def decode_official(scores, ctrness, boxes, score_thresh, topk_candidates, nms_thresh,
                    max_detections):
    """
    Candidates, scores and class-wise NMS of the official `get_bboxes_single`.

    Args:
        scores: per level (Ri, K) sigmoid(class logits).
        ctrness: per level (Ri,) sigmoid(centerness).
        boxes: per level (Ri, 4) decoded boxes, already clamped to the image.
        score_thresh: a (location, class) is a candidate when its class probability exceeds it.
        topk_candidates: per level, only the locations with the largest max_k scores x ctrness
            are kept when a level has more (mmdet's nms_pre).
        nms_thresh: IoU of :func:`nms_plus_one`.
        max_detections: the best-scored kept when there are more.
    Returns:
        boxes (D, 4), scores (D,) = class probability x centerness, classes (D,),
        locations (D,): index of each detection into the levels' locations concatenated
        (to pick coefficients), ordered class by class (as the official code).
    """
    kept_scores, kept_ctr, kept_boxes, kept_loc = [], [], [], []
    offset = 0
    for s, c, b in zip(scores, ctrness, boxes):
        loc = torch.arange(s.shape[0], device=s.device) + offset
        offset = offset + s.shape[0]
        if topk_candidates > 0:
            top = _best_first_if_more((s * c[:, None]).max(dim=1).values, topk_candidates)
            s, c, b, loc = s[top], c[top], b[top], loc[top]
        kept_scores.append(s), kept_ctr.append(c), kept_boxes.append(b), kept_loc.append(loc)
    s, c, b, loc = (torch.cat(x) for x in (kept_scores, kept_ctr, kept_boxes, kept_loc))
    out_boxes, out_scores, out_classes, out_loc = [], [], [], []
    for k in range(s.shape[1]):
        cand = torch.nonzero(s[:, k] > score_thresh).squeeze(1)
        score = s[cand, k] * c[cand]
        keep = cand[nms_plus_one(b[cand], score, nms_thresh)]
        out_boxes.append(b[keep])
        out_scores.append(s[keep, k] * c[keep])
        out_classes.append(torch.full_like(keep, k))
        out_loc.append(loc[keep])
    out = [torch.cat(x) for x in (out_boxes, out_scores, out_classes, out_loc)]
    top = _best_first_if_more(out[1], max_detections,
                              best=lambda x, n: x.argsort(descending=True)[:n])
    return [x[top] for x in out]


def _best_first_if_more(values, k, best=lambda x, n: x.topk(n).indices):
    """
    Args:
        values: (R,).
        k: the most kept.
        best: (values, n) -> (n,) indices of the n best, best first.
    Returns:
        (min(R, k),) indices: the k best, best first, when R > k; else arange(R) (all, in
        their order). Under `torch.jit.trace` R is the traced length, so an exported graph
        chooses at run time.
    """
    num = values.shape[0]
    if not isinstance(num, torch.Tensor):
        return best(values, k) if num > k else torch.arange(num, device=values.device)
    n = torch.clamp(num, max=k)
    return torch.where(num > k, best(values, n), torch.arange(n, device=values.device))


def crop_split(basis, coefficients, boxes, grid=(2, 2)):
    """
    The official `CropSplit` (forward) on SMP: pixel (px, py) of the basis map, in integer
    indices, belongs to a box when x1 <= px < x2 and y1 <= py < y2, and to its sub-region
    (trunc((py - y1) / rh), trunc((px - x1) / rw)), where rw = float32(x2 - x1 + 0.1) / cols
    and rh alike; there it is sigmoid(basis . coefficients of that sub-region), elsewhere 0.

    Args:
        basis: (m, Hb, Wb) basis masks of one image.
        coefficients: (P, rows*cols, m), sub-regions row-major.
        boxes: (P, 4) XYXY in basis pixels (float32).
        grid: (rows, cols).
    Returns:
        (P, Hb, Wb) probabilities.
    """
    rows, cols = grid
    m, height, width = basis.shape
    boxes = boxes.float()
    col_idx = _cell_index(boxes[:, 0], boxes[:, 2], cols, width)  # (P, Wb), -1 outside
    row_idx = _cell_index(boxes[:, 1], boxes[:, 3], rows, height)  # (P, Hb)
    # only the (box, y, x) inside a box are computed: time and memory grow with the boxes' area
    inside = (row_idx[:, :, None] >= 0) & (col_idx[:, None, :] >= 0)  # (P, Hb, Wb)
    p, y, x = torch.nonzero(inside, as_tuple=True)  # (N,) each
    cell = row_idx[p, y] * cols + col_idx[p, x]
    pixels = basis.reshape(m, -1).t()[y * width + x]  # (N, m)
    logits = (coefficients[p, cell] * pixels).sum(dim=1)
    out = basis.new_zeros((boxes.shape[0], height, width))
    out[p, y, x] = logits.sigmoid()
    return out


def _cell_index(lo, hi, parts, size):
    """
    Args:
        lo, hi: (P,) float32 box extent along one axis, basis pixels.
        parts: cells along the axis.
        size: pixels along the axis.
    Returns:
        (P, size) int64: CropSplit's cell of each integer pixel index, -1 outside [lo, hi).
    """
    pix = torch.arange(size, device=lo.device, dtype=torch.float32)[None]  # (1, size)
    # (hi - lo + 0.1) / parts: float32 difference, + 0.1 and / parts in double (a CUDA double
    # literal), stored as float32 (the kernel's scalar_t)
    step = (((hi - lo).double() + 0.1) / parts).float()[:, None]
    cell = ((pix - lo[:, None]) / step).long().clamp(max=parts - 1)  # .long() truncates
    inside = (pix >= lo[:, None]) & (pix < hi[:, None])
    return torch.where(inside, cell, torch.full_like(cell, -1))


def upsample_masks(mask_probs, scale, output_size, threshold, chunk=16):
    """
    The official pasting: the whole probability map upsampled bilinearly (align_corners
    False) by `scale`, the top-left `output_size` kept (zero-padded where smaller), > threshold.

    Args:
        mask_probs: (P, Hb, Wb).
        scale: (sy, sx) output pixels per basis pixel.
        output_size: (H, W).
        threshold: probability threshold.
        chunk: masks upsampled at once (bounds memory at large sizes).
    Returns:
        (P, H, W) bool.
    """
    height, width = output_size
    out = torch.zeros((len(mask_probs), height, width), dtype=torch.bool,
                      device=mask_probs.device)  # fmt: skip
    for start in range(0, len(mask_probs), chunk):
        x = mask_probs[start:start + chunk][None]
        x = F.interpolate(x, scale_factor=tuple(scale), mode="bilinear", align_corners=False)[0]
        h, w = min(height, x.shape[-2]), min(width, x.shape[-1])
        out[start:start + chunk, :h, :w] = x[:, :h, :w] > threshold
    return out
