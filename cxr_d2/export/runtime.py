"""
`load_exported`: run a file written by `export_model` (TorchScript in torch, ONNX in
onnxruntime) and apply the post-processing its sidecar names, so that its Instances compare
1:1 with the PyTorch model's `model([{"image", "height", "width"}])[0]["instances"]`.
"""
import json
import os
import pydoc

import torch
from detectron2.structures import Boxes, Instances

from ..errors import CXRError
from .schema import schema_from_json

__all__ = ["ExportedModel", "load_exported"]


def load_exported(path):
    """
    The ExportedModel of `path`: an exported file (model.ts / model.onnx) or its folder (the
    file named by model.json there). Raises CXRError naming the path when the file or its
    sidecar model.json is missing or unreadable.
    """
    folder, name = (path, None) if os.path.isdir(path) else os.path.split(path)
    sidecar = os.path.join(folder, "model.json")
    try:
        with open(sidecar) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CXRError(f"{sidecar} cannot be read ({e}); export the model again with "
                       "tools/export_model.py, which writes it beside the model file") from None
    file = os.path.join(folder, name or meta["file"])
    if not os.path.isfile(file):
        raise CXRError(f"{file} does not exist; give the model.ts or model.onnx that "
                       "tools/export_model.py wrote")
    return ExportedModel(file, meta)


class ExportedModel:
    """
    An exported detector. Call it on one image:

        exported = load_exported("output/export/model.onnx")
        instances = exported(image, height, width)

    `meta` is the sidecar dict (input format, outputs, post-processing left outside).
    """

    def __init__(self, path, meta):
        self.path, self.meta = path, meta
        schema = meta["outputs_schema"]
        self.outputs_schema = _fields_to_instances if schema is None else schema_from_json(schema)
        self.postprocess = pydoc.locate(meta["postprocess"])
        if self.postprocess is None:
            raise CXRError(f"{path}: its post-processing {meta['postprocess']} cannot be "
                           "imported; install the package that defines it")
        if meta["format"] == "onnx":
            self._run = _onnx_runner(path)
        else:
            module = torch.jit.load(path, map_location="cpu")
            self._run = lambda image: module(image)

    def raw(self, image):
        """
        The graph's output on `image` ((C, H, W), uint8 or float, in meta["input"]["format"],
        resized as the test mapper does) as Instances in that image's frame, before the outside
        post-processing.
        """
        self._check(image)
        image = image.detach().float().cpu().contiguous()
        with torch.no_grad():
            out = self._run(image)
        if isinstance(out, dict):  # scripted: the fields; the frame is the image's
            return self.outputs_schema(out, tuple(image.shape[-2:]))
        inst = self.outputs_schema(list(out))
        return Instances(tuple(int(v) for v in inst.image_size), **inst.get_fields())

    def __call__(self, image, height=None, width=None):
        """
        Instances for the original film of (height, width) (default: the image's own size),
        after the outside post-processing: pred_boxes XYXY in the film's pixels, scores,
        pred_classes and, for mask models, pred_masks (R, height, width) bool.
        """
        height = int(image.shape[-2]) if height is None else int(height)
        width = int(image.shape[-1]) if width is None else int(width)
        return self.postprocess(self.raw(image), height, width)

    def predict_batch(self, batched_inputs):
        """A Detectron2 model's interface for inference_on_dataset: a list of dataset dicts
        ("image", optional "height" and "width") -> a list of {"instances": Instances}."""
        return [
            {"instances": self(x["image"], x.get("height"), x.get("width"))}
            for x in batched_inputs
        ]

    def _check(self, image):
        inp = self.meta["input"]
        if image.dim() != 3 or image.shape[0] != inp["channels"]:
            raise CXRError(f"{self.path} takes a ({inp['channels']}, H, W) image in "
                           f"{inp['format']}; got shape {tuple(image.shape)}")
        if not self.meta["dynamic_size"] and list(image.shape[1:]) != self.meta["sample_size"]:
            raise CXRError(f"{self.path} was exported for {self.meta['sample_size']} (H, W) "
                           f"images only; got {list(image.shape[1:])}: resize to that size")


def _fields_to_instances(fields, image_size):
    """A scripted model's output dict as Instances (`*boxes` fields as Boxes)."""
    return Instances(image_size, **{
        k: Boxes(v) if k.endswith("boxes") else v for k, v in fields.items()
    })


def _onnx_runner(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(image):
        return [torch.from_numpy(o) for o in session.run(None, {"image": image.numpy()})]

    return run
