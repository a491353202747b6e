"""tools/export_model.py (cxr_d2.export.cli.main) on tiny R-18 models of the tiny phantom set."""
import contextlib
import io
import json
import re

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from PIL import Image

from cxr_d2.engine import Trainer
from cxr_d2.export import cli
from tests.export.common import LOW_THRESHOLDS, tiny_model
from tests.helpers import TINY, TINY_OPTS, cpu_config


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_onnx_export_checks_and_evaluates_as_pytorch(tiny_phantom, one_thread, tmp_path):
    """The tool's printed difference is below 1e-3 px and its --run-eval metrics equal the
    PyTorch model's on the same films through the same evaluator."""
    cfg, model = tiny_model("retinanet", tmp_path)
    weights = tmp_path / "w.pth"
    torch.save({"model": model.state_dict()}, weights)
    out_dir = tmp_path / "export"
    rc, out, err = _run(["--config-file", cpu_config("retinanet"), "--format", "onnx",
                         "--run-eval", "--output", str(out_dir)] + TINY_OPTS + LOW_THRESHOLDS
                        + ["MODEL.WEIGHTS", str(weights)])
    assert rc == 0, err[-2000:]
    assert (out_dir / "model.onnx").is_file() and (out_dir / "model.json").is_file()
    diff = float(re.search(r"max box difference (\S+) px", out).group(1))
    assert diff < 1e-3 and "20 vs 20 detections" in out
    exported_ap = float(re.search(r"^bbox of the exported model on \S+: AP (\S+),", out,
                                  re.M).group(1))

    dataset = f"{TINY}_test"
    evaluator = Trainer.build_evaluator(cfg, dataset, str(tmp_path / "pytorch"))
    metrics = inference_on_dataset(model, Trainer.build_test_loader(cfg, dataset), evaluator)
    assert exported_ap == pytest.approx(metrics["bbox"]["AP"], abs=1e-4)
    # random weights score AP 0 on both sides: the detections the evaluator saw must agree too
    results = out_dir / "inference" / dataset / "coco_instances_results.json"
    _assert_same_results(results, tmp_path / "pytorch" / "coco_instances_results.json")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tracing", "scripting"])
def test_torchscript_of_a_sample_film(tiny_phantom, one_thread, tmp_path, method):
    """--sample-image: a film file at another size than the test set's, read and resized by the
    tool; the exported Mask R-CNN agrees with PyTorch on it and its TorchScript IR is dumped."""
    cfg, model = tiny_model("mask_rcnn", tmp_path)
    weights = tmp_path / "w.pth"
    torch.save({"model": model.state_dict()}, weights)
    film = tmp_path / "film.png"
    record = DatasetCatalog.get(f"{TINY}_test")[0]
    Image.open(record["file_name"]).crop((0, 0, 128, 96)).resize((256, 192)).save(film)
    out_dir = tmp_path / "export"
    rc, out, err = _run(["--config-file", cpu_config("mask_rcnn"), "--format", "torchscript",
                         "--export-method", method, "--sample-image", str(film),
                         "--output", str(out_dir)] + TINY_OPTS + LOW_THRESHOLDS
                        + ["MODEL.WEIGHTS", str(weights)])
    assert rc == 0, err[-2000:]
    assert "20 vs 20 detections" in out and "mask" in out
    meta = json.loads((out_dir / "model.json").read_text())
    assert meta["sample_size"] == [96, 128] and meta["export_method"] == method
    assert (out_dir / "model.ts").is_file() and (out_dir / "model_ts_code.txt").is_file()


def _assert_same_results(path_a, path_b):
    """Two COCO results files list the same detections per image (XYWH within 2e-3 px: each of
    w, h is a difference of two coordinates within 1e-3)."""
    a, b = (sorted(json.loads(p.read_text()), key=lambda r: (r["image_id"], -r["score"]))
            for p in (path_a, path_b))
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        assert (ra["image_id"], ra["category_id"]) == (rb["image_id"], rb["category_id"])
        assert ra["score"] == pytest.approx(rb["score"], abs=1e-4)
        assert ra["bbox"] == pytest.approx(rb["bbox"], abs=2e-3)


@pytest.mark.parametrize("argv,message", [
    (["--config-file", cpu_config("solov2"), "--format", "onnx"],
     "error: exporting SOLOv2 is not supported (exportable: "),
    (["--config-file", cpu_config("retinanet"), "--format", "onnx", "--export-method",
      "scripting"], "error: scripting exports TorchScript only, not onnx; use --export-method "
     "tracing for onnx"),
])
def test_unsupported_is_one_line(tiny_phantom, tmp_path, argv, message):
    rc, out, err = _run(argv + ["--output", str(tmp_path)] + TINY_OPTS)
    assert rc == 1
    lines = [ln for ln in err.splitlines() if ln.strip() and "Generating phantoms" not in ln]
    assert len(lines) == 1 and lines[0].startswith(message), err[-2000:]
