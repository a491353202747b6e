"""tools/visualize_data.py and tools/visualize_json_results.py on the tiny phantom set."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from cxr_d2.predict import visualize_data, visualize_json
from cxr_d2.predict.overlay import class_color
from cxr_d2.predict.writers import overlay_names
from tests.helpers import TINY, TINY_OPTS, cpu_config


def _run(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _edge_fraction(drawn, color, box, dx=0):
    """Fraction of the lower half of the left and right edges of XYXY `box` (shifted `dx`
    px) where `color` (RGB in [0, 1]) is found within 2 px of the edge line."""
    hit = np.abs(drawn[:, :, :3].astype(float) - np.array(color) * 255).max(axis=2) < 2
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    mid = (y1 + y2) // 2
    rows = slice(mid, y2 - 1)
    left = hit[rows, max(x1 + dx - 2, 0):x1 + dx + 3].any(axis=1)
    right = hit[rows, x2 + dx - 2:x2 + dx + 3].any(axis=1)
    return min(left.mean(), right.mean())


def _xyxy(anno):
    return BoxMode.convert(anno["bbox"], anno["bbox_mode"], BoxMode.XYXY_ABS)


def test_visualize_data_annotation_and_dataloader(tiny_phantom, tmp_path):
    config = cpu_config("faster_rcnn")
    rc, out, err = _run(visualize_data.main, ["--source", "annotation", "--config-file", config,
                                              "--output-dir", str(tmp_path / "a")] + TINY_OPTS)
    assert rc == 0, err[-2000:]
    records = DatasetCatalog.get(f"{TINY}_train")
    names = overlay_names([r["file_name"] for r in records])
    assert sorted(n for n in os.listdir(tmp_path / "a") if n.endswith(".png")) == sorted(names)
    metadata = MetadataCatalog.get(f"{TINY}_train")
    record, name = next((r, n) for r, n in zip(records, names) if len(r["annotations"]) == 1)
    drawn = np.asarray(Image.open(tmp_path / "a" / name))
    assert drawn.shape[:2] == (record["height"], record["width"])
    anno = record["annotations"][0]
    assert _edge_fraction(drawn, class_color(metadata, anno["category_id"]), _xyxy(anno)) >= 0.8

    rc, out, err = _run(visualize_data.main, ["--source", "dataloader", "--config-file", config,
                                              "--output-dir", str(tmp_path / "d"),
                                              "--num-images", "3"] + TINY_OPTS)
    assert rc == 0, err[-2000:]
    drawn = sorted(n for n in os.listdir(tmp_path / "d") if n.endswith(".png"))
    assert len(drawn) == 3 and drawn[0].startswith("00000_")
    assert "drew 3 images (dataloader)" in out


def test_visualize_json_results_draws_predictions_above_threshold_and_gt(tiny_phantom, tmp_path):
    dataset = f"{TINY}_test"
    records = DatasetCatalog.get(dataset)
    metadata = MetadataCatalog.get(dataset)
    to_dataset = {v: k for k, v in
                  (metadata.get("thing_dataset_id_to_contiguous_id", None) or {}).items()}
    record = next(r for r in records if len(r["annotations"]) == 1)
    shown, hidden = (20.0, 24.0, 40.0, 50.0), (70.0, 20.0, 40.0, 40.0)  # XYWH
    results = [
        {"image_id": record["image_id"], "category_id": to_dataset.get(1, 1), "bbox": list(shown),
         "score": 0.9},
        {"image_id": record["image_id"], "category_id": to_dataset.get(2, 2), "bbox": list(hidden),
         "score": 0.3},
    ]
    path = tmp_path / "coco_instances_results.json"
    path.write_text(json.dumps(results))
    rc, out, err = _run(visualize_json.main, ["--input", str(path), "--output",
                                              str(tmp_path / "v"), "--dataset", dataset])
    assert rc == 0, err[-2000:]
    names = overlay_names([r["file_name"] for r in records])
    assert sorted(os.listdir(tmp_path / "v")) == sorted(names)
    name = names[records.index(record)]
    drawn = np.asarray(Image.open(tmp_path / "v" / name))
    width = record["width"]
    assert drawn.shape[:2] == (record["height"], 2 * width)
    pred = drawn[:, :width]
    x, y, w, h = shown
    assert _edge_fraction(pred, class_color(metadata, 1), (x, y, x + w, y + h)) >= 0.9
    x, y, w, h = hidden  # below --conf-threshold 0.5: not drawn
    assert _edge_fraction(pred, class_color(metadata, 2), (x, y, x + w, y + h)) == 0
    anno = record["annotations"][0]
    color = class_color(metadata, anno["category_id"])
    assert _edge_fraction(drawn, color, _xyxy(anno), dx=width) >= 0.8
    # an image without predictions still gets its ground truth panel
    assert "drew %d images" % len(records) in out


@pytest.mark.parametrize("bad", ["{}", "not json"])
def test_visualize_json_results_bad_input_is_one_line(tmp_path, bad):
    path = tmp_path / "r.json"
    path.write_text(bad)
    rc, out, err = _run(visualize_json.main, ["--input", str(path), "--output", str(tmp_path),
                                              "--dataset", f"{TINY}_test"])
    assert rc == 1 and err.startswith(f"error: --input {path}") and len(err.splitlines()) == 1
