"""SOLOv2 training targets: which grid cells of which level an instance is positive in.

Coordinates: input pixels of the padded batch, pixel (r, c) covering [c, c + 1) x [r, r + 1),
so a mask's centre of mass is the mean of (c + 0.5, r + 0.5) over its pixels. Cell (i, j) of
an S x S grid covers rows [i H / S, (i + 1) H / S) and columns [j W / S, (j + 1) W / S).
"""

import math

import torch
import torch.nn.functional as F

__all__ = ["mask_centres", "assign_level", "downsample_masks", "solov2_targets"]


def mask_centres(masks):
    """
    Args:
        masks (Tensor[G, H, W]): binary masks.

    Returns:
        Tensor[G, 2]: (x, y) centre of mass of each mask (NaN for an empty mask).
    """
    m = masks.float()
    h, w = m.shape[-2:]
    area = m.sum((1, 2))
    ys = torch.arange(h, device=m.device, dtype=m.dtype) + 0.5
    xs = torch.arange(w, device=m.device, dtype=m.dtype) + 0.5
    cx = (m.sum(1) * xs).sum(1) / area
    cy = (m.sum(2) * ys).sum(1) / area
    return torch.stack([cx, cy], dim=1)


def _cell(v, size, grid):
    """The grid index (0 .. grid - 1) of coordinate `v` along an axis of `size` pixels."""
    return min(max(int(math.floor(v * grid / size)), 0), grid - 1)


def assign_level(boxes, centres, classes, image_size, grid, scale_range, sigma, num_classes):
    """
    Targets of one image at one level (AdelaiDet's rule). An instance belongs to the level
    when sqrt(box w * h) lies in [lower, upper]; it is then positive in the cells covered by
    its centre region (centre of mass +- sigma * box size / 2), clipped to the 3 x 3 cells
    around its centre cell. A later instance overwrites an earlier one in a shared cell.

    Args:
        boxes (Tensor[G, 4]): XYXY boxes; centres (Tensor[G, 2]): `mask_centres`.
        classes (Tensor[G]): class indices; image_size (tuple): padded (H, W).
        grid (int): S; scale_range (tuple): (lower, upper); sigma (float);
        num_classes (int): K, the background label.

    Returns:
        labels (Tensor[S, S]): class of each cell, K for background.
        assigned (Tensor[S * S]): index into the G instances per cell (row-major), -1 for none.
    """
    h, w = image_size
    labels = torch.full((grid, grid), num_classes, dtype=torch.long, device=boxes.device)
    assigned = torch.full((grid, grid), -1, dtype=torch.long, device=boxes.device)
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    lower, upper = scale_range
    for g in torch.nonzero((sizes >= lower) & (sizes <= upper)).flatten().tolist():
        cx, cy = centres[g].tolist()
        if not (math.isfinite(cx) and math.isfinite(cy)):
            continue  # empty mask: no centre
        half_w = 0.5 * sigma * float(boxes[g, 2] - boxes[g, 0])
        half_h = 0.5 * sigma * float(boxes[g, 3] - boxes[g, 1])
        row, col = _cell(cy, h, grid), _cell(cx, w, grid)
        top = max(_cell(cy - half_h, h, grid), row - 1)
        down = min(_cell(cy + half_h, h, grid), row + 1)
        left = max(_cell(cx - half_w, w, grid), col - 1)
        right = min(_cell(cx + half_w, w, grid), col + 1)
        labels[top : down + 1, left : right + 1] = classes[g]
        assigned[top : down + 1, left : right + 1] = g
    return labels, assigned.flatten()


def downsample_masks(masks, image_size, stride):
    """
    Args:
        masks (Tensor[G, h, w]): binary masks of an unpadded image.
        image_size (tuple): padded (H, W), multiples of `stride`.
        stride (int): of the Dice loss (`MODEL.SOLOV2.LOSS.DICE_STRIDE`).

    Returns:
        Tensor[G, H // stride, W // stride]: float 0/1 masks, 1 where the mask covers at least
        half of the stride x stride block. A non-empty mask never becomes empty: if no block
        reaches half, its most covered block is 1 (AdelaiDet's rescaling empties masks of a
        few pixels, whose Dice loss is then a constant 1).
    """
    h, w = image_size
    padded = masks.new_zeros((masks.shape[0], h, w), dtype=torch.float32)
    padded[:, : masks.shape[1], : masks.shape[2]] = masks.float()
    if masks.shape[0] == 0 or stride == 1:
        return padded[:, ::stride, ::stride]
    fraction = F.avg_pool2d(padded[None], stride)[0]  # (G, H / stride, W / stride)
    out = (fraction >= 0.5).float()
    flat, frac = out.flatten(1), fraction.flatten(1)
    lost = (flat.sum(1) == 0) & (frac.amax(1) > 0)
    flat[lost, frac[lost].argmax(1)] = 1.0
    return out


@torch.no_grad()
def solov2_targets(gt_instances, image_size, mask_stride, num_grids, scale_ranges, sigma,
                   num_classes):  # fmt: skip
    """
    Args:
        gt_instances (list[Instances]): per image, gt_boxes, gt_classes and gt_masks
            (BitMasks of the unpadded image).
        image_size (tuple): padded (H, W) of the batch.
        mask_stride (int): stride of the mask targets (the Dice loss's).
        num_grids, scale_ranges: per level; sigma (float); num_classes (int).

    Returns:
        labels (list[Tensor[N, S_i * S_i]]): per level, the class of each cell (K = none).
        assigned (list[Tensor[N, S_i * S_i]]): per level, instance index per cell or -1.
        gt_masks (list[Tensor[G_n, H / mask_stride, W / mask_stride]]): per image, 0/1.
    """
    labels = [[] for _ in num_grids]
    assigned = [[] for _ in num_grids]
    gt_masks = []
    for inst in gt_instances:
        masks = inst.gt_masks.tensor
        centres = mask_centres(masks)
        boxes = inst.gt_boxes.tensor
        for level, (grid, scale_range) in enumerate(zip(num_grids, scale_ranges)):
            lab, asg = assign_level(
                boxes, centres, inst.gt_classes, image_size, grid, scale_range, sigma, num_classes
            )
            labels[level].append(lab.flatten())
            assigned[level].append(asg)
        gt_masks.append(downsample_masks(masks, image_size, mask_stride))
    labels = [torch.stack(x) for x in labels]
    assigned = [torch.stack(x) for x in assigned]
    return labels, assigned, gt_masks
