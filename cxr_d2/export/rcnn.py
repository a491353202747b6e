"""
Export specs of Detectron2's meta-architectures: GeneralizedRCNN (Faster and Mask R-CNN) and
RetinaNet. Both keep Detectron2's `detector_postprocess` outside the graph, as
tools/deploy/export_model.py does: the graph returns boxes in the resized input's pixels and
Mask R-CNN's per-box 28x28 mask probabilities; outside, boxes are scaled to the original
(height, width), clipped, empty boxes dropped, and masks pasted into the film and thresholded
at 0.5.
"""
from typing import Dict

from detectron2.modeling import GeneralizedRCNN, RetinaNet
from torch import Tensor, nn

from .spec import register_export

__all__ = [
    "DETECTOR_POSTPROCESS",
    "rcnn_inference",
    "dense_inference",
    "RCNNScriptingAdapter",
    "DenseScriptingAdapter",
]

DETECTOR_POSTPROCESS = "detectron2.modeling.postprocessing.detector_postprocess"


def rcnn_inference(model, image):
    """GeneralizedRCNN on one (C, H, W) image without its final rescaling: Instances with
    pred_boxes (R, 4) XYXY in the input's pixels, scores (R,), pred_classes (R,) and, with
    MASK_ON, pred_masks (R, 1, M, M) mask probabilities in each box."""
    return model.inference([{"image": image}], do_postprocess=False)[0]


def dense_inference(model, image):
    """A DenseDetector (RetinaNet) on one (C, H, W) image: its `forward` up to, not including,
    detector_postprocess. Instances with pred_boxes (R, 4) XYXY in the input's pixels, scores,
    pred_classes."""
    images = model.preprocess_image([{"image": image}])
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    return model.forward_inference(images, features, model.head(features))[0]


class RCNNScriptingAdapter(nn.Module):
    """`rcnn_inference` for torch.jit.script: (C, H, W) image -> the Instances' fields, boxes as
    (R, 4) tensors (a dict, not Instances: a scripted Instances cannot leave Python)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Dict[str, Tensor]:
        return self.model.inference([{"image": image}], do_postprocess=False)[0].get_fields()


class DenseScriptingAdapter(RCNNScriptingAdapter):
    """`dense_inference` for torch.jit.script: a scripted DenseDetector skips
    detector_postprocess itself."""

    def forward(self, image: Tensor) -> Dict[str, Tensor]:
        return self.model([{"image": image}])[0].get_fields()


_RESCALE = "detector_postprocess: boxes scaled from the resized input to (height, width), " \
    "clipped to it, empty boxes dropped"

register_export(
    GeneralizedRCNN,
    inference=rcnn_inference,
    postprocess=DETECTOR_POSTPROCESS,
    outside=_RESCALE + "; with MASK_ON, the (R, 1, M, M) mask probabilities pasted into each "
    "box of the (height, width) film (paste_masks_in_image) and thresholded at 0.5",
    scripting_adapter=RCNNScriptingAdapter,
)
register_export(
    RetinaNet,
    inference=dense_inference,
    postprocess=DETECTOR_POSTPROCESS,
    outside=_RESCALE,
    scripting_adapter=DenseScriptingAdapter,
)
