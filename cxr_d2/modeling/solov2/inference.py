"""SOLOv2 inference: grid cells to scored masks, Matrix NMS, masks to original size, boxes."""

import torch
import torch.nn.functional as F
from detectron2.structures import BitMasks, Boxes, Instances

from .matrix_nms import matrix_nms
from .layers import dynamic_conv

__all__ = ["point_nms", "masks_to_boxes", "solov2_inference_single"]


def point_nms(heat):
    """
    Keep the scores that are the maximum of the 2x2 window ending at their cell (AdelaiDet's
    "points NMS" of the category grids); zero the others.

    Args:
        heat (Tensor[N, K, S, S]): category probabilities.

    Returns:
        Tensor[N, K, S, S].
    """
    hmax = F.max_pool2d(heat, kernel_size=2, stride=1, padding=1)[..., :-1, :-1]
    return heat * (hmax == heat).to(heat.dtype)


def masks_to_boxes(masks):
    """
    Tight box of each binary mask (Detectron2's BitMasks.get_bounding_boxes).

    Args:
        masks (Tensor[M, H, W]): binary masks.

    Returns:
        Boxes: XYXY_ABS, x2 = last foreground column + 1, y2 = last row + 1; all zero for an
        empty mask.
    """
    return Boxes(BitMasks(masks).get_bounding_boxes().tensor.to(masks.device))


def _masks_at_output(logits, padded_size, image_size, output_size, mask_thr, upsample="probs"):
    """
    (M, h, w) mask logits at mask-feature scale -> (M, H, W) bool masks at `output_size`:
    upsampled bilinearly to the padded input, cropped to the image, resized to the original
    size, thresholded at `mask_thr`. `upsample` "probs" (AdelaiDet): the sigmoid is taken first
    and the probabilities are resized; "logits": the logits are resized (as the Dice loss
    upsamples them) and the sigmoid taken last.
    """
    if logits.shape[0] == 0:
        return logits.new_zeros((0, *output_size), dtype=torch.bool)
    maps = logits[None] if upsample == "logits" else logits.sigmoid()[None]
    maps = F.interpolate(maps, size=padded_size, mode="bilinear", align_corners=False)
    maps = maps[..., : image_size[0], : image_size[1]]
    if tuple(image_size) != tuple(output_size):
        maps = F.interpolate(maps, size=output_size, mode="bilinear", align_corners=False)
    probs = maps[0].sigmoid() if upsample == "logits" else maps[0]
    return probs > mask_thr


def solov2_inference_single(cate_probs, kernels, strides, mask_features, padded_size,
                            image_size, output_size, *, score_thr=0.1, mask_thr=0.5,
                            nms_pre=500, update_thr=0.05, max_per_img=100,
                            nms_kernel="gaussian", nms_sigma=2.0, min_mask_area="cells",
                            mask_upsample="probs"):  # fmt: skip
    """
    One image: threshold the category scores, make each candidate's mask by dynamic conv,
    drop masks no larger than their level's stride (`min_mask_area`), score = category x
    maskness (mean probability inside the mask), Matrix NMS, keep the best, resize the masks
    (`mask_upsample`).

    Args:
        cate_probs (Tensor[R, K]): point-NMS'd category probabilities of all grid cells.
        kernels (Tensor[R, E]): their kernels; strides (Tensor[R]): their level's stride.
        mask_features (Tensor[E, h, w]): at stride padded_size / (h, w).
        padded_size (tuple): (H_pad, W_pad) of the batch; image_size (tuple): the image's
            (h_in, w_in) inside it; output_size (tuple): the original (H, W).
        min_mask_area (str): a candidate is kept when its binary mask has more than its
            level's stride of "cells" (mask-feature cells, AdelaiDet's rule) or of "pixels"
            (input pixels: cells x (stride of the mask features)^2).
        mask_upsample (str): "probs" (AdelaiDet) or "logits", see `_masks_at_output`.

    Returns:
        Instances of `output_size`: pred_masks (bool, M x H x W), scores, pred_classes,
        pred_boxes (the masks' tight boxes).
    """
    cells, classes = (cate_probs > score_thr).nonzero(as_tuple=True)
    scores = cate_probs[cells, classes]
    logits = dynamic_conv(kernels[cells], mask_features)  # (M, h, w)
    probs = logits.sigmoid()
    masks = probs > mask_thr
    areas = masks.sum((1, 2)).float()
    mask_stride = padded_size[0] // mask_features.shape[-2]
    cell_pixels = mask_stride**2 if min_mask_area == "pixels" else 1
    keep = areas * cell_pixels > strides[cells]
    logits, probs, masks, areas, scores, classes = (
        x[keep] for x in (logits, probs, masks, areas, scores, classes)
    )
    scores = scores * (probs * masks).sum((1, 2)) / areas.clamp(min=1)
    order = scores.argsort(descending=True)[:nms_pre]
    logits, masks, areas, scores, classes = (
        x[order] for x in (logits, masks, areas, scores, classes)
    )
    scores = matrix_nms(masks, classes, scores, nms_kernel, nms_sigma, areas)
    keep = scores >= update_thr
    order = scores[keep].argsort(descending=True)[:max_per_img]
    logits, scores, classes = logits[keep][order], scores[keep][order], classes[keep][order]
    result = Instances(output_size)
    result.pred_masks = _masks_at_output(
        logits, padded_size, image_size, output_size, mask_thr, mask_upsample
    )
    result.scores = scores
    result.pred_classes = classes
    result.pred_boxes = masks_to_boxes(result.pred_masks)
    return result
