"""
SipMask in `cxr_d2.export` (tools/export_model.py): the graph runs the network, the official
decoding, NMS and spatial mask prediction (CropSplit) and returns each detection's mask
probabilities at basis resolution; outside it, :func:`sipmask_postprocess` rescales the boxes
and pastes the masks into the (height, width) film exactly as `SipMask.forward` does.
"""
import torch

from cxr_d2.export import UnsupportedExport, register_export
from cxr_d2.export.rcnn import dense_inference

from .sipmask import SipMask, masks_to_output

__all__ = ["sipmask_inference", "sipmask_postprocess"]


def _check_exportable(model):
    if type(model) is not SipMask:  # e.g. SipMaskVIS: its tracking is not in this export
        raise UnsupportedExport(f"exporting {type(model).__name__} is not supported; "
                                "only SipMask (META_ARCHITECTURE 'SipMask') exports")
    for key, value in (("POSTPROCESS", model.postprocess), ("MASK_PASTE", model.mask_paste)):
        if value != "official":
            raise UnsupportedExport(
                f"SipMask with MODEL.SIPMASK.{key} {value!r} cannot be exported (its per-box "
                f"Python loops do not trace); export with MODEL.SIPMASK.{key} 'official'"
            )


def sipmask_inference(model, image):
    """
    The traced part: SipMask on one (C, H, W) image up to, not including, the mask pasting.

    Returns:
        Instances in the input's frame with pred_boxes (R, 4) XYXY, scores, pred_classes,
        mask_probs (R, Hb, Wb) SMP probabilities at basis resolution, keep_index (arange(R)),
        and the two constants the pasting needs, repeated per detection (a graph output is a
        tensor): basis_stride (R,) input pixels per basis pixel and mask_threshold (R,)
        (MODEL.SIPMASK.MASK_THRESH), both float64.
    """
    _check_exportable(model)
    r = dense_inference(model, image)
    ones = torch.ones_like(r.scores, dtype=torch.float64)
    r.basis_stride = ones * model._basis_stride
    r.mask_threshold = ones * model.mask_thresh
    return r


def sipmask_postprocess(instances, height, width):
    """
    Outside the graph, as `SipMask.forward` (:func:`masks_to_output`): boxes scaled from the
    input to (height, width) (no clipping, as mmdetection), every mask probability map
    upsampled bilinearly by basis_stride x (height / h, width / w) and thresholded.

    Returns:
        Instances of (height, width): pred_boxes, scores, pred_classes, pred_masks (R, height,
        width) bool.
    """
    image_size = tuple(int(x) for x in instances.image_size)
    stride, thresh = instances.basis_stride, instances.mask_threshold
    instances.remove("basis_stride")
    instances.remove("mask_threshold")
    # with no detection there is no mask to paste: any stride and threshold do
    stride = float(stride[0]) if len(stride) else 1.0
    thresh = float(thresh[0]) if len(thresh) else 0.5
    return masks_to_output(instances, image_size, height, width, basis_stride=stride,
                           mask_thresh=thresh)


register_export(
    SipMask,
    inference=sipmask_inference,
    postprocess=__name__ + ".sipmask_postprocess",
    outside="boxes scaled from the resized input to (height, width) without clipping (as "
    "mmdetection); each detection's mask probabilities (basis resolution) upsampled bilinearly "
    "to the film and thresholded at MODEL.SIPMASK.MASK_THRESH (SipMask.forward's pasting)",
)
