"""
The official SipMask inference (mmdetection 1.x `SipMaskHead.get_bboxes_single`, its
`multiclass_nms_idx`, the CPU `nms` and the `CropSplit` op), on Detectron2's tensors:
MODEL.SIPMASK.POSTPROCESS "official" and MASK_PASTE "official".
"""
import torch
from torch.nn import functional as F

__all__ = ["crop_split", "decode_official", "nms_plus_one", "upsample_masks"]


def nms_plus_one(boxes, scores, threshold):
    """
    mmdetection 1.x's CPU NMS (`nms_cpu.cpp`): areas (x2 - x1 + 1)(y2 - y1 + 1), a box is
    suppressed by a higher-scored kept one when IoU >= `threshold`.

    Args:
        boxes: (R, 4) XYXY; scores: (R,).
    Returns:
        (K,) int64 indices of the kept boxes, in increasing index order (as nms_cpu).
    """
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    w = (torch.min(x2[:, None], x2[None]) - torch.max(x1[:, None], x1[None]) + 1).clamp(min=0)
    h = (torch.min(y2[:, None], y2[None]) - torch.max(y1[:, None], y1[None]) + 1).clamp(min=0)
    inter = w * h
    iou = inter / (areas[:, None] + areas[None] - inter)
    order = scores.argsort(descending=True).tolist()
    keep = _greedy_nms((iou >= threshold).tolist(), order)
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _greedy_nms(iou_over, order):
    """
    Args:
        iou_over: (R, R) nested lists of bool, IoU >= threshold.
        order: indices by decreasing score.
    Returns:
        sorted list of kept indices: each box in `order` not suppressed by an earlier kept one.
    """
    suppressed = [False] * len(order)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        row = iou_over[i]
        for j in order[pos + 1:]:
            if not suppressed[j] and row[j]:
                suppressed[j] = True
    return [i for i, s in enumerate(suppressed) if not s]


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
        loc = torch.arange(len(s), device=s.device) + offset
        offset += len(s)
        if 0 < topk_candidates < len(s):
            top = (s * c[:, None]).max(dim=1).values.topk(topk_candidates).indices
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
        out_classes.append(torch.full((len(keep),), k, dtype=torch.long, device=s.device))
        out_loc.append(loc[keep])
    out = [torch.cat(x) for x in (out_boxes, out_scores, out_classes, out_loc)]
    if len(out[1]) > max_detections:
        top = out[1].argsort(descending=True)[:max_detections]
        out = [x[top] for x in out]
    return out


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
    out = basis.new_zeros((len(boxes), height, width))
    boxes = boxes.float()
    col_idx = _cell_index(boxes[:, 0], boxes[:, 2], cols, width)  # (P, Wb), -1 outside
    row_idx = _cell_index(boxes[:, 1], boxes[:, 3], rows, height)  # (P, Hb)
    for p in range(len(boxes)):
        for r in range(rows):
            ys = torch.nonzero(row_idx[p] == r).squeeze(1)
            if len(ys) == 0:
                continue
            for c in range(cols):
                xs = torch.nonzero(col_idx[p] == c).squeeze(1)
                if len(xs) == 0:
                    continue
                y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
                crop = basis[:, y0:y1, x0:x1]
                logits = torch.einsum("m,mhw->hw", coefficients[p, r * cols + c], crop)
                out[p, y0:y1, x0:x1] = logits.sigmoid()
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
    cell = torch.trunc((pix - lo[:, None]) / step).long().clamp(max=parts - 1)
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
