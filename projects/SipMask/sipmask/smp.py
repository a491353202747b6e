"""Spatial mask prediction (SMP): one coefficient set per sub-region of a box."""
import torch

__all__ = ["spatial_mask_prediction", "subregion_masks"]


def _interval_masks(lo, hi, parts, size):
    """
    Args:
        lo, hi: (P,) box extent along one axis, in map pixels.
        parts: number of equal sub-intervals.
        size: number of pixels along the axis.
    Returns:
        (P, parts, size) bool: pixel centre i + 0.5 lies in [lo + j*(hi-lo)/parts,
        lo + (j+1)*(hi-lo)/parts) for sub-interval j.
    """
    centres = torch.arange(size, device=lo.device, dtype=lo.dtype) + 0.5  # (size,)
    step = (hi - lo) / parts  # (P,)
    j = torch.arange(parts + 1, device=lo.device, dtype=lo.dtype)
    bounds = lo[:, None] + j[None, :] * step[:, None]  # (P, parts + 1)
    return (centres[None, None, :] >= bounds[:, :-1, None]) & (
        centres[None, None, :] < bounds[:, 1:, None]
    )


def subregion_masks(boxes, grid, height, width):
    """
    Args:
        boxes: (P, 4) x1, y1, x2, y2 in map pixels (floats).
        grid: (rows, cols).
        height, width: map size.
    Returns:
        (P, rows*cols, H, W) bool: pixel (x, y) belongs to sub-region (r, c) (row-major) of the
        box, with the half-open rule of `spatial_mask_prediction`.
    """
    rows, cols = grid
    boxes = boxes.to(torch.float64)  # exact sub-region bounds for float32 coordinates
    in_rows = _interval_masks(boxes[:, 1], boxes[:, 3], rows, height)  # (P, rows, H)
    in_cols = _interval_masks(boxes[:, 0], boxes[:, 2], cols, width)  # (P, cols, W)
    masks = in_rows[:, :, None, :, None] & in_cols[:, None, :, None, :]  # (P, rows, cols, H, W)
    return masks.reshape(len(boxes), rows * cols, height, width)


def spatial_mask_prediction(basis, coefficients, boxes, grid=(2, 2)):
    """
    SipMask's SMP: M_k = sigmoid(B x C_k) for each sub-region k, each map zeroed outside its
    sub-region of the box, the maps added.

    Args:
        basis: (m, H, W) basis masks of one image.
        coefficients: (P, rows*cols, m) one set per sub-region, row-major (for 2x2: top-left,
            top-right, bottom-left, bottom-right).
        boxes: (P, 4) x1, y1, x2, y2 in basis-map pixels (floats, may be fractional or outside
            the map).
        grid: (rows, cols) of sub-regions.
    Returns:
        (P, H, W) values in [0, 1]. Pixel (x, y) has centre (x + 0.5, y + 0.5); it belongs to
        sub-region (r, c) when x1 + c*w/cols <= x + 0.5 < x1 + (c+1)*w/cols and likewise for
        rows (w = x2 - x1, h = y2 - y1); a pixel whose centre is outside [x1, x2) x [y1, y2)
        is 0.
    """
    rows, cols = grid
    m, height, width = basis.shape
    num, regions, dim = coefficients.shape
    if regions != rows * cols or dim != m or boxes.shape != (num, 4):
        raise ValueError(
            f"spatial_mask_prediction: basis {tuple(basis.shape)}, coefficients "
            f"{tuple(coefficients.shape)} and boxes {tuple(boxes.shape)} do not fit grid {grid}"
        )
    out = basis.new_zeros((num, height, width))
    if num == 0:
        return out
    # Each sub-region is a rectangle of pixels: only those are computed (inference time then
    # grows with the boxes' area, not with P x K x H x W).
    boxes = boxes.to(torch.float64)
    row_ranges = _pixel_ranges(_interval_masks(boxes[:, 1], boxes[:, 3], rows, height))
    col_ranges = _pixel_ranges(_interval_masks(boxes[:, 0], boxes[:, 2], cols, width))
    for p in range(num):
        for r, (y0, y1) in enumerate(row_ranges[p]):
            for c, (x0, x1) in enumerate(col_ranges[p]):
                if y0 < y1 and x0 < x1:
                    crop = basis[:, y0:y1, x0:x1]  # (m, h, w)
                    logits = torch.einsum("m,mhw->hw", coefficients[p, r * cols + c], crop)
                    out[p, y0:y1, x0:x1] = logits.sigmoid()
    return out


def _pixel_ranges(inside):
    """
    Args:
        inside: (P, parts, size) bool, each row a contiguous run of True (or none).
    Returns:
        nested lists [P][parts] of (start, end): the run's pixels, end exclusive (start == end
        when empty).
    """
    count = inside.sum(dim=-1)
    start = inside.to(torch.uint8).argmax(dim=-1)
    return torch.stack([start, start + count], dim=-1).tolist()
