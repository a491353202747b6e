"""
Export cxr-d2 models to TorchScript or ONNX and run the exported files with the same
detections as the PyTorch model.

    path = export_model(cfg, model, sample_inputs, "onnx", "output/export")  # + model.json
    exported = load_exported(path)               # TorchScript in torch, ONNX in onnxruntime
    instances = exported(image, height, width)   # post-processing outside the graph applied
    report = compare_instances(instances, model([{"image": image, "height": height,
                                                  "width": width}])[0]["instances"])
    assert report.ok, report

An architecture becomes exportable by registering an ExportSpec for its meta-architecture
class (`register_export`, see spec.py): Detectron2's GeneralizedRCNN and RetinaNet in rcnn.py;
FCOS and SipMask in dense.py, imported here when present.
"""
import importlib

from .compare import InstancesComparison, compare_instances
from .exporter import MODEL_FILES, ONNX_OPSET, export_model, sample_image
from .runtime import ExportedModel, load_exported
from .spec import FORMATS, ExportSpec, UnsupportedExport, find_export_spec, register_export
from . import rcnn  # noqa: F401,I001 (registers GeneralizedRCNN and RetinaNet)

try:
    importlib.import_module(__name__ + ".dense")  # registers FCOS and SipMask
except ModuleNotFoundError as e:
    if e.name != __name__ + ".dense":
        raise

__all__ = [
    "FORMATS",
    "MODEL_FILES",
    "ONNX_OPSET",
    "ExportSpec",
    "ExportedModel",
    "InstancesComparison",
    "UnsupportedExport",
    "compare_instances",
    "export_model",
    "find_export_spec",
    "load_exported",
    "register_export",
    "sample_image",
]
