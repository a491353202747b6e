"""
Export specs of cxr-d2's FCOS (META_ARCHITECTURE "FCOS" and AdelaiDet's "OneStageDetector").
The whole of AdelaiDet's inference rule is in the graph (per-level threshold and top-k, box
decoding, class-wise NMS, the per-image limit with its ties); outside it, as for RetinaNet,
Detectron2's `detector_postprocess` scales the boxes to the film, clips them and drops empty
ones. SipMask registers its own spec from its project (projects/SipMask/sipmask/export.py).
"""
from ..modeling.fcos import FCOS, OneStageDetector
from .rcnn import DETECTOR_POSTPROCESS, dense_inference
from .spec import UnsupportedExport, register_export

__all__ = ["fcos_inference"]

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
