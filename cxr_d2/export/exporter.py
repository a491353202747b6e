"""
`export_model`: trace a model's inference with Detectron2's TracingAdapter and write it as
TorchScript (torch.jit.trace) or ONNX (torch.onnx.export with dynamo=False: the
TorchScript-based exporter), with a sidecar JSON that says what the graph takes and returns and
which post-processing stays outside it.

Why the TorchScript-based ONNX exporter: torch 2.14's default (dynamo=True, torch.export)
stops at Detectron2's ImageList.from_tensors, whose padding is computed from tensors
(GuardOnDataDependentSymNode: "Could not guard on data-dependent expression"); the
TorchScript-based exporter traces it, with the image's height and width as dynamic axes.
Opset 17: RoIAlign's `aligned` (Detectron2's ROIAlignV2) needs opset >= 16.
"""
import json
import logging
import os
import warnings

import torch
from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances
from detectron2.structures import Boxes

from .schema import flat_names, schema_to_json
from .spec import FORMATS, UnsupportedExport, find_export_spec

__all__ = ["ONNX_OPSET", "MODEL_FILES", "export_model", "sample_image"]

logger = logging.getLogger(__name__)

ONNX_OPSET = 17
MODEL_FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}
METHODS = ("tracing", "scripting")
# The Instances fields of Detectron2's R-CNNs and RetinaNet (its tools/deploy/export_model.py).
SCRIPTING_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": torch.Tensor,
    "pred_boxes": Boxes,
    "scores": torch.Tensor,
    "pred_classes": torch.Tensor,
    "pred_masks": torch.Tensor,
}
IN_GRAPH = (
    "normalisation by MODEL.PIXEL_MEAN/PIXEL_STD, padding to the backbone's size divisibility, "
    "the network, box decoding, score threshold, top-k, NMS and the per-image detection limit"
)


def sample_image(sample_inputs):
    """The (C, H, W) float32 image of `sample_inputs`: a tensor, a dataset dict with "image" or
    a list of them (the first is used), as Detectron2's test loader yields."""
    if isinstance(sample_inputs, (list, tuple)):
        sample_inputs = sample_inputs[0]
    if isinstance(sample_inputs, dict):
        sample_inputs = sample_inputs["image"]
    return sample_inputs.float()


def export_model(cfg, model, sample_inputs, fmt, output_dir, export_method="tracing",
                 opset=ONNX_OPSET, dump_ir=False):
    """
    Export `model` (any architecture with a registered ExportSpec) and return the path of the
    written file, `output_dir`/model.ts or model.onnx, beside model.json (the sidecar that
    `load_exported` reads).

    Args:
        cfg: the model's config (INPUT.FORMAT and the test resize go to the sidecar).
        model: the built model, weights loaded; it is put in eval mode.
        sample_inputs: the image traced: (C, H, W) tensor, a dataset dict or a list of them,
            resized as the test mapper does. Its size is recorded; the graph takes any size when
            the spec says dynamic_size.
        fmt: "torchscript" or "onnx".
        export_method: "tracing" (TracingAdapter + torch.jit.trace or torch.onnx.export) or
            "scripting" (torch.jit.script through Detectron2's scripting_with_instances;
            TorchScript only, for specs with a scripting_adapter).
        opset: the ONNX opset.
        dump_ir: TorchScript only: also write Detectron2's dump_torchscript_IR text files.
    Raises:
        UnsupportedExport naming the architecture, format or method.
    """
    if fmt not in FORMATS:
        raise UnsupportedExport(f"format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if export_method not in METHODS:
        raise UnsupportedExport(f"export method {export_method!r} is not supported; use one of "
                                f"{', '.join(METHODS)}")
    spec = find_export_spec(model, fmt)
    if export_method == "scripting":
        _check_scripting(model, spec, fmt)
    model.eval()
    image = sample_image(sample_inputs).to(next(model.parameters()).device)
    os.makedirs(output_dir, exist_ok=True)
    if export_method == "scripting":
        return _export_scripting(cfg, model, spec, fmt, image, output_dir, dump_ir)
    adapter = TracingAdapter(model, (image,), spec.inference).eval()  # eval: export restores mode
    with torch.no_grad():
        adapter(image)  # fills adapter.outputs_schema, which names the outputs
    names = flat_names(adapter.outputs_schema)
    path = os.path.join(output_dir, MODEL_FILES[fmt])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if fmt == "torchscript":
            traced = torch.jit.trace(adapter, (image,), check_trace=False)
            torch.jit.save(traced, path)
            if dump_ir:
                dump_torchscript_IR(traced, output_dir)
        else:
            _export_onnx(adapter, image, path, names, opset, spec.dynamic_size)
    meta = _sidecar(cfg, model, spec, fmt, path, image, names, adapter.outputs_schema, opset)
    return _write_sidecar(meta, output_dir)


def _check_scripting(model, spec, fmt):
    if fmt != "torchscript":
        raise UnsupportedExport(f"scripting exports TorchScript only, not {fmt}; use "
                                "--export-method tracing for onnx")
    if spec.scripting_adapter is None:
        raise UnsupportedExport(f"{type(model).__name__} cannot be scripted; use "
                                "--export-method tracing")


def _export_scripting(cfg, model, spec, fmt, image, output_dir, dump_ir):
    """torch.jit.script of the spec's scripting adapter; its outputs are a dict of fields."""
    adapter = spec.scripting_adapter(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation
        scripted = scripting_with_instances(adapter, spec.scripting_fields or SCRIPTING_FIELDS)
    path = os.path.join(output_dir, MODEL_FILES[fmt])
    torch.jit.save(scripted, path)
    if dump_ir:
        dump_torchscript_IR(scripted, output_dir)
    with torch.no_grad():
        names = sorted(scripted(image).keys())
    meta = _sidecar(cfg, model, spec, fmt, path, image, names, None, None)
    meta.update(export_method="scripting", exporter="torch.jit.script")
    return _write_sidecar(meta, output_dir)


def _write_sidecar(meta, output_dir):
    """Writes model.json; returns the model file's path."""
    with open(os.path.join(output_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
    path = os.path.join(output_dir, meta["file"])
    logger.info("Exported %s to %s (outputs: %s)", meta["meta_architecture"], path,
                ", ".join(meta["outputs"]))
    return path


def _export_onnx(adapter, image, path, names, opset, dynamic_size):
    dynamic_axes = {n: {0: "detections"} for n in names if not n.endswith("image_size")}
    if dynamic_size:
        dynamic_axes["image"] = {1: "height", 2: "width"}
    torch.onnx.export(
        adapter, (image,), path, dynamo=False, opset_version=opset, input_names=["image"],
        output_names=names, dynamic_axes=dynamic_axes,
    )


def _sidecar(cfg, model, spec, fmt, path, image, names, schema, opset):
    return {
        "file": os.path.basename(path),
        "format": fmt,
        "export_method": "tracing",
        "exporter": {"torchscript": "torch.jit.trace",
                     "onnx": "torch.onnx.export(dynamo=False)"}[fmt],
        "opset": opset if fmt == "onnx" else None,
        "torch": torch.__version__,
        "meta_architecture": type(model).__name__,
        "input": {
            "name": "image",
            "shape": ["C", "H", "W"],
            "channels": int(image.shape[0]),
            "dtype": "float32",
            "format": cfg.INPUT.FORMAT,
            "resize": "ResizeShortestEdge(INPUT.MIN_SIZE_TEST={}, INPUT.MAX_SIZE_TEST={}) before "
            "the graph, as the test mapper does".format(cfg.INPUT.MIN_SIZE_TEST,
                                                       cfg.INPUT.MAX_SIZE_TEST),
        },
        "dynamic_size": spec.dynamic_size,
        "sample_size": [int(image.shape[1]), int(image.shape[2])],
        "in_graph": IN_GRAPH,
        "outputs": names,
        "outputs_schema": None if schema is None else schema_to_json(schema),
        "postprocess": spec.postprocess,
        "outside": spec.outside,
    }
