"""compare_instances on hand-worked detections; the schema's JSON round trip; one-line
refusals of what cannot be exported."""
import json

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.export.flatten import flatten_to_tuple
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from torch import nn

from cxr_d2.errors import CXRError
from cxr_d2.export import (
    UnsupportedExport,
    compare_instances,
    export_model,
    find_export_spec,
    load_exported,
    register_export,
)
from cxr_d2.export.schema import flat_names, schema_from_json, schema_to_json


def _inst(boxes, scores, classes, masks=None, size=(8, 8)):
    out = Instances(size, pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                    scores=torch.tensor(scores), pred_classes=torch.tensor(classes))
    if masks is not None:
        out.pred_masks = masks
    return out


A = ([[0, 0, 4, 4], [2, 2, 6, 6], [1, 1, 3, 3]], [0.9, 0.5, 0.5], [0, 1, 1])


def test_equal_and_tied_scores_in_another_order_agree():
    b = _inst([A[0][0], A[0][2], A[0][1]], [0.9, 0.5, 0.5], [0, 1, 1])  # tie swapped
    report = compare_instances(_inst(*A), b)
    assert report.ok, report
    assert report.max_box_diff == 0 and report.max_score_diff == 0


def test_box_score_class_and_count_differences_are_reported():
    shifted = _inst([[0, 0, 4, 4.002], A[0][1], A[0][2]], *A[1:])
    report = compare_instances(_inst(*A), shifted)
    assert not report.ok and report.max_box_diff == pytest.approx(0.002, abs=1e-6)
    assert report.problems == ["boxes differ by up to 0.002 px > 0.001"]
    assert compare_instances(_inst(*A), shifted, box_atol=0.003).ok

    assert not compare_instances(_inst(*A), _inst(A[0], [0.9, 0.5, 0.4998], A[2])).ok
    assert not compare_instances(_inst(*A), _inst(A[0], A[1], [0, 1, 0])).ok
    fewer = compare_instances(_inst(*A), _inst(A[0][:2], A[1][:2], A[2][:2]))
    assert fewer.problems == ["3 detections against 2"]


def test_mask_iou_and_disagreeing_pixels():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True  # 16 pixels each
    other = masks.clone()
    other[1, 4, 0] = True  # one more pixel in the second: IoU 16/17
    report = compare_instances(_inst(*A, masks=masks), _inst(*A, masks=other))
    assert report.mask_pixels_differ == 1
    assert report.min_mask_iou == pytest.approx(16 / 17)
    assert not report.ok  # 0.941 < 0.99
    assert compare_instances(_inst(*A, masks=masks), _inst(*A, masks=other), mask_iou=0.94).ok


def test_schema_json_round_trip_rebuilds_instances():
    inst = _inst(*A)
    flat, schema = flatten_to_tuple(inst)
    restored = schema_from_json(json.loads(json.dumps(schema_to_json(schema))))
    assert restored == schema
    assert flat_names(restored) == ["pred_boxes", "pred_classes", "scores", "image_size"]
    rebuilt = restored(list(flat))
    assert isinstance(rebuilt.pred_boxes, Boxes) and rebuilt.image_size.tolist() == [8, 8]
    assert compare_instances(rebuilt, inst).ok


def test_unsupported_architecture_format_and_method_are_one_line():
    with pytest.raises(UnsupportedExport, match=r"^exporting Linear is not supported \("):
        find_export_spec(nn.Linear(1, 1))
    with pytest.raises(UnsupportedExport, match=r"format 'caffe2' is not supported"):
        export_model(None, nn.Linear(1, 1), torch.zeros(3, 8, 8), "caffe2", ".")
    with pytest.raises(UnsupportedExport, match="export method 'compile' is not supported"):
        export_model(None, nn.Linear(1, 1), torch.zeros(3, 8, 8), "onnx", ".", "compile")


class _NotScriptable(nn.Linear):
    pass


register_export(_NotScriptable, inference=lambda m, x: None, postprocess="x.y", outside="-",
                formats=("torchscript",))


@pytest.mark.parametrize("fmt,method,message", [
    ("onnx", "tracing", "_NotScriptable cannot be exported to onnx; its formats: torchscript"),
    ("torchscript", "scripting", "_NotScriptable cannot be scripted; use --export-method tracing"),
])
def test_refusals_of_a_registered_architecture(tmp_path, fmt, method, message):
    with pytest.raises(UnsupportedExport, match=f"^{message}$"):
        export_model(None, _NotScriptable(1, 1), torch.zeros(3, 8, 8), fmt, str(tmp_path), method)


class _TinyDetector(nn.Module):
    """One box per image from a 1x1 conv: (C, H, W) -> Instances of one detection."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, image):
        x = self.conv(image[None] / 255.0).mean(dim=(2, 3))[0]  # (5,)
        h, w = image.shape[-2:]
        box = torch.stack([x[0].abs(), x[1].abs(), x[2].abs() + w / 2, x[3].abs() + h / 2])
        return Instances((h, w), pred_boxes=Boxes(box[None]), scores=x[4:5].sigmoid(),
                         pred_classes=torch.zeros(1, dtype=torch.int64))


register_export(_TinyDetector, inference=lambda m, image: m(image), dynamic_size=False,
                postprocess="detectron2.modeling.postprocessing.detector_postprocess",
                outside="detector_postprocess")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fixed_size_export_runs_and_refuses_other_sizes(tmp_path, fmt):
    torch.manual_seed(0)
    model = _TinyDetector()
    image = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
    path = export_model(get_cfg(), model, [{"image": image}], fmt, str(tmp_path))
    exported = load_exported(str(tmp_path))  # the folder: the file named by model.json
    assert exported.path == path and exported.meta["sample_size"] == [16, 24]
    got = exported(image, 32, 48)  # the film at twice the input's size
    with torch.no_grad():
        ref = detector_postprocess(model(image.float()), 32, 48)
    report = compare_instances(got, ref)
    assert report.ok and len(got) == 1, report
    with pytest.raises(CXRError, match=r"was exported for \[16, 24\] \(H, W\) images only; "
                                       r"got \[16, 16\]: resize to that size$"):
        exported(image[:, :, :16])
    with pytest.raises(CXRError, match=r"takes a \(3, H, W\) image in"):
        exported(image[:1])


def test_missing_sidecar_is_one_line(tmp_path):
    with pytest.raises(CXRError, match=r"model\.json cannot be read .*; export the model again"):
        load_exported(str(tmp_path / "model.onnx"))
