"""
Faster R-CNN, Mask R-CNN and RetinaNet exported (TorchScript in torch, ONNX in onnxruntime)
give PyTorch's detections on phantom films of sizes other than the traced sample's.
"""
import json

import pytest

from cxr_d2.export import export_model, load_exported
from tests.export.common import CROPS, assert_matches, film_inputs, sample_input, tiny_model

# ONNX, the format for deployment outside Python: ~5 s of CPU each at one thread
ONNX_DEFAULT = [(family, "onnx", "tracing") for family in ("faster_rcnn", "mask_rcnn", "retinanet")]
SLOW = [
    ("faster_rcnn", "torchscript", "tracing"),
    ("mask_rcnn", "torchscript", "tracing"),
    ("retinanet", "torchscript", "tracing"),
    ("faster_rcnn", "torchscript", "scripting"),
    ("mask_rcnn", "torchscript", "scripting"),
    ("retinanet", "torchscript", "scripting"),
]
CASES = ONNX_DEFAULT + [pytest.param(*case, marks=pytest.mark.slow) for case in SLOW]


@pytest.mark.parametrize("family,fmt,method", CASES)
def test_exported_detections_equal_pytorch(tiny_phantom, one_thread, tmp_path, family, fmt,
                                           method):
    cfg, model = tiny_model(family, tmp_path)
    sample = sample_input(cfg)
    path = export_model(cfg, model, sample, fmt, str(tmp_path / "export"), method)
    exported = load_exported(path)
    meta = json.loads((tmp_path / "export" / "model.json").read_text())
    assert meta["dynamic_size"] and meta["sample_size"] == [128, 128]
    assert meta["postprocess"] == "detectron2.modeling.postprocessing.detector_postprocess"

    inputs = film_inputs(cfg)
    assert [list(x["image"].shape[1:]) for x in inputs] == [list(c) for c in CROPS]
    reports = assert_matches(model, exported, inputs)
    print(f"{family} {fmt} {method}: " + " | ".join(map(str, reports)))  # docs/export.md's table
    if family == "mask_rcnn":  # the pasted masks exist and were compared
        assert all(r.min_mask_iou >= 0.99 for r in reports)
        assert exported(**inputs[0]).pred_masks.shape[1:] == (2 * CROPS[0][0], 2 * CROPS[0][1])
