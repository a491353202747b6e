"""
tools/predict.py end to end on a folder mixing an 8-bit PNG, a 16-bit PNG, a DICOM without
extension, a broken PNG and a non-image, plus a list file (the shared ACR-NEMA chest film when
present, a missing file): a seeded tiny Mask R-CNN, checked against Detectron2's
DefaultPredictor on the same files.
"""
import contextlib
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from PIL import Image

from cxr_d2.data import read_image
from cxr_d2.predict.cli import main
from cxr_d2.predict.overlay import class_color
from tests.helpers import REPO_ROOT
from tests.predict.films import (
    MODEL_CONFIG,
    SHARED_DICOM,
    model_config,
    write_checkpoint,
    write_films,
)

MAX_DETS = 6


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    films = write_films(str(folder))
    weights = write_checkpoint(str(folder / "model.pth"))
    listed = [films["png"], str(folder / "missing.png")]  # chest.png twice: predicted once
    if os.path.isfile(SHARED_DICOM):
        listed.append(SHARED_DICOM)
    list_file = folder / "more.txt"
    list_file.write_text("# films\n" + "\n".join(listed) + "\n")
    output = str(folder / "out")
    argv = ["--config-file", MODEL_CONFIG, "--input", os.path.dirname(films["png"]),
            str(list_file), "--output", output, "--score-thresh", "0", "--max-dets",
            str(MAX_DETS), "--num-workers", "1", "--no-progress", "--opts", "MODEL.WEIGHTS",
            weights]
    rc, out, err = _run(argv)
    with open(os.path.join(output, "predictions.json")) as f:
        results = json.load(f)
    with open(os.path.join(output, "images.json")) as f:
        images = json.load(f)
    with open(os.path.join(output, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    return dict(rc=rc, out=out, err=err, films=films, weights=weights, output=output,
                results=results, images=images, rows=rows, folder=folder)


def test_summary_counts_and_skip_lines(predicted):
    films = predicted["films"]
    read = 4 if os.path.isfile(SHARED_DICOM) else 3
    assert predicted["rc"] == 0, predicted["err"][-2000:]
    assert f"predicted {read} images, skipped 2 unreadable, 1 non-image files in folders " \
           f"ignored; {read * MAX_DETS} detections" in predicted["out"]
    skip_lines = [line for line in predicted["err"].splitlines() if line.startswith("skipped: ")]
    assert len(skip_lines) == 2, predicted["err"][-2000:]
    assert skip_lines[0].startswith(f"skipped: {films['broken']}: not a readable image")
    assert "missing.png: file does not exist" in skip_lines[1]
    read_files = sorted(i["file_name"] for i in predicted["images"]["images"])
    expected = [films["png"], films["png16"], films["dicom"]]
    expected += [SHARED_DICOM] if os.path.isfile(SHARED_DICOM) else []
    assert read_files == sorted(expected)
    assert len(predicted["images"]["skipped"]) == 2


def _direct(weights, path):
    """DefaultPredictor's instances for the file: Detectron2's own resize and postprocess."""
    predictor = _direct.cache.get(weights) or DefaultPredictor(model_config(weights))
    _direct.cache[weights] = predictor
    return predictor(read_image(path, "BGR"))["instances"].to("cpu")


_direct.cache = {}


def test_json_equals_direct_inference(predicted):
    by_image = {}
    for r in predicted["results"]:
        by_image.setdefault(r["file_name"], []).append(r)
    for image in predicted["images"]["images"]:
        path = image["file_name"]
        height, width = read_image(path).shape[:2]
        assert (image["height"], image["width"]) == (height, width)
        direct = _direct(predicted["weights"], path)
        order = np.argsort(-direct.scores.numpy(), kind="stable")[:MAX_DETS]
        got = by_image[path]
        assert len(got) == MAX_DETS == len(order)
        for r, k in zip(got, order):
            assert (r["height"], r["width"]) == (height, width)
            assert r["category_id"] == int(direct.pred_classes[k])
            assert r["score"] == pytest.approx(float(direct.scores[k]), abs=1e-5)
            x, y, w, h = r["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], direct.pred_boxes.tensor[k].numpy(),
                                       atol=1e-3)
            mask = mask_util.decode(r["segmentation"]).astype(bool)
            assert mask.shape == (height, width)
            assert (mask == direct.pred_masks[k].numpy()).all()


def test_csv_rows_equal_json(predicted):
    rows, results = predicted["rows"], predicted["results"]
    names = MetadataCatalog.get("cxr_phantom_test").thing_classes
    assert len(rows) == len(results) > 0
    for row, r in zip(rows, results):
        x, y, w, h = r["bbox"]
        assert row["file_name"] == r["file_name"]
        assert row["class"] == names[r["category_id"]] == r["category_name"]
        assert float(row["score"]) == pytest.approx(r["score"], abs=1e-6)
        got = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
        np.testing.assert_allclose(got, [x, y, x + w, y + h], atol=1e-3)
        if r["file_name"] == predicted["films"]["dicom"]:  # PixelSpacing 0.2 (rows) 0.25 (cols)
            assert float(row["width_mm"]) == pytest.approx(w * 0.25, abs=2e-3)
            assert float(row["height_mm"]) == pytest.approx(h * 0.2, abs=2e-3)
        else:
            assert row["width_mm"] == row["pixel_spacing_col_mm"] == ""


def test_one_overlay_per_image_with_the_boxes_drawn(predicted):
    metadata = MetadataCatalog.get("cxr_phantom_test")
    images = predicted["images"]["images"]
    overlays = os.listdir(os.path.join(predicted["output"], "overlays"))
    assert sorted(overlays) == sorted(os.path.basename(i["overlay"]) for i in images)
    for image in images:
        drawn = np.asarray(Image.open(os.path.join(predicted["output"], image["overlay"])))
        assert drawn.shape[:2] == (image["height"], image["width"])
        top = next(r for r in predicted["results"] if r["file_name"] == image["file_name"])
        color = np.array(class_color(metadata, top["category_id"])) * 255
        hit = np.abs(drawn[:, :, :3].astype(float) - color).max(axis=2) < 2
        x, y, w, h = (int(round(v)) for v in top["bbox"])
        edges = np.zeros_like(hit)
        edges[max(y - 2, 0):y + h + 3, max(x - 2, 0):x + 3] = True  # left edge
        edges[max(y - 2, 0):y + h + 3, max(x + w - 2, 0):x + w + 3] = True  # right edge
        assert hit[edges].sum() >= h // 2, image["file_name"]


def test_classes_filter_and_exit_status_when_nothing_is_read(predicted, tmp_path):
    films, weights = predicted["films"], predicted["weights"]
    common = ["--config-file", MODEL_CONFIG, "--score-thresh", "0", "--no-progress",
              "--no-overlays", "--num-workers", "0"]
    rc, out, err = _run(common + ["--input", films["png"], "--classes", "cavitation,0",
                                  "--output", str(tmp_path / "a"), "--opts", "MODEL.WEIGHTS",
                                  weights])
    assert rc == 0, err[-2000:]
    with open(tmp_path / "a" / "predictions.json") as f:
        classes = {r["category_id"] for r in json.load(f)}
    assert classes and classes <= {0, 1}
    assert not os.path.exists(tmp_path / "a" / "overlays")
    rc, out, err = _run(common + ["--input", films["broken"], "--output", str(tmp_path / "b"),
                                  "--opts", "MODEL.WEIGHTS", weights])
    assert rc == 1
    assert "predicted 0 images, skipped 1 unreadable; 0 detections" in out
    rc, out, err = _run(common + ["--input", films["png"], "--classes", "nodule", "--output",
                                  str(tmp_path / "c"), "--opts", "MODEL.WEIGHTS", weights])
    assert rc == 1 and err.startswith("error: --classes nodule: 'nodule' is not a class")


@pytest.mark.slow
def test_tool_script_runs(predicted, tmp_path):
    """The script itself, in a fresh interpreter (~10 s): a glob input; no weights is one line."""
    pattern = os.path.join(os.path.dirname(predicted["films"]["png"]), "*.png")
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "predict.py"), "--config-file",
           MODEL_CONFIG, "--input", pattern, "--output", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: MODEL.WEIGHTS is empty")
