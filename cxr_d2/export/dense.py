"""
Export specs of cxr-d2's FCOS (META_ARCHITECTURE "FCOS" and AdelaiDet's "OneStageDetector").
The whole of AdelaiDet's inference rule is in the graph (per-level threshold and top-k, box
decoding, class-wise NMS, the per-image limit with its ties); outside it, as for RetinaNet,
Detectron2's `detector_postprocess` scales the boxes to the film, clips them and drops empty
ones. SipMask registers its own spec from its project (projects/SipMask/sipmask/export.py).

Deformable convolution (torchvision's deform_conv2d: cxr_d2.layers.DeformConv, SipMask's
feature alignment, DCN backbones) exports to ONNX as DeformConv, an operator of opset 19;
onnxruntime runs it on the CPU. torchvision registers no ONNX symbolic for it.
"""
import torch
from torch.onnx.symbolic_helper import _get_tensor_sizes, parse_args

from ..modeling.fcos import FCOS, OneStageDetector
from .rcnn import DETECTOR_POSTPROCESS, dense_inference
from .spec import UnsupportedExport, register_export

__all__ = ["DEFORM_CONV_OPSET", "fcos_inference"]

DEFORM_CONV_OPSET = 19

_EXACT = (FCOS, OneStageDetector)


def fcos_inference(model, image):
    """
    FCOS on one (C, H, W) image up to, not including, detector_postprocess: Instances in the
    input's frame with pred_boxes (R, 4) XYXY, scores (R,) sqrt(sigmoid(class) x
    sigmoid(centerness)) and pred_classes (R,).

    Raises UnsupportedExport for a model built on FCOS whose own outputs (e.g. BlendMask's
    masks) this export would drop.
    """
    if type(model) not in _EXACT:
        raise UnsupportedExport(
            f"exporting {type(model).__name__} is not supported: it is built on FCOS, whose "
            "export would drop its own outputs"
        )
    return dense_inference(model, image)


for _cls in _EXACT:
    register_export(
        _cls,
        inference=fcos_inference,
        postprocess=DETECTOR_POSTPROCESS,
        outside="detector_postprocess: boxes scaled from the resized input to (height, width), "
        "clipped to it, empty boxes dropped",
    )


@parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w, dil_h,
                   dil_w, groups, offset_groups, use_mask):
    """torchvision::deform_conv2d as ONNX DeformConv: the same (dy, dx) offset layout per
    offset group and kernel point (checked against torchvision in tests/export)."""
    kernel = _get_tensor_sizes(weight)[-2:]
    inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op("DeformConv", *inputs, kernel_shape_i=kernel,
                pads_i=[pad_h, pad_w, pad_h, pad_w], strides_i=[stride_h, stride_w],
                dilations_i=[dil_h, dil_w], group_i=groups, offset_group_i=offset_groups)


def _deform_conv2d_needs_opset_19(g, *args):
    raise UnsupportedExport(
        f"deformable convolution exports as ONNX DeformConv, an opset {DEFORM_CONV_OPSET} "
        f"operator: export with --opset {DEFORM_CONV_OPSET} (export_model(..., "
        f"opset={DEFORM_CONV_OPSET}))"
    )


torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d",
                                       _deform_conv2d_needs_opset_19, 9)  # fmt: skip
torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d,
                                       DEFORM_CONV_OPSET)  # fmt: skip
