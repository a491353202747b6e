"""The compact instances_predictions.pth: what is saved comes back equal, and is smaller."""

import pickle

import numpy as np
import torch
from detectron2.structures import Boxes, Instances
from pycocotools import mask as mask_util

from cxr_d2.evaluation.predictions_file import (
    FORMAT,
    compact,
    expand,
    load_predictions,
    save_predictions,
)


def _predictions(masks, float32=True, seed=0):
    """Detectron2's gathered form: {"image_id", "instances": [COCO result dicts]}."""
    rng = np.random.default_rng(seed)
    out = []
    for img in (3, 1, 7):
        rows = []
        for _ in range(int(rng.integers(0, 5))):
            box = rng.uniform(0, 40, 4)
            score = rng.uniform()
            if float32:
                box, score = box.astype(np.float32), np.float32(score)
            r = {
                "image_id": img,
                "category_id": int(rng.integers(0, 3)),
                "bbox": [float(v) for v in box],
                "score": float(score),
            }
            if masks:
                m = (rng.uniform(size=(20, 30)) > 0.5).astype(np.uint8)
                rle = mask_util.encode(np.asfortranarray(m))
                r["segmentation"] = {"size": [20, 30], "counts": rle["counts"].decode("utf-8")}
            rows.append(r)
        out.append({"image_id": img, "instances": rows})
    return out


def test_round_trip_with_and_without_masks(tmp_path):
    for masks in (False, True):
        for float32 in (True, False):
            preds = _predictions(masks, float32)
            small = compact(preds)
            assert all(p["format"] == FORMAT for p in small)
            dtype = np.float32 if float32 else np.float64  # float32 only when exact
            assert all(p["instances"]["bbox"].dtype == dtype for p in small)
            assert expand(small) == preds
            path = str(tmp_path / "instances_predictions.pth")
            save_predictions(path, preds)
            assert load_predictions(path) == preds
            # As Detectron2's file: a list of per-image dicts with their image_id.
            raw = torch.load(path, weights_only=False)
            assert [p["image_id"] for p in raw] == [3, 1, 7]


def test_compact_is_smaller():
    rng = np.random.default_rng(1)
    boxes = rng.uniform(0, 500, (20, 100, 4)).astype(np.float32).tolist()
    preds = [
        {
            "image_id": i,
            "instances": [
                {"image_id": i, "category_id": k % 4, "bbox": b, "score": 0.5}
                for k, b in enumerate(rows)
            ],
        }
        for i, rows in enumerate(boxes)
    ]
    assert expand(compact(preds)) == preds
    assert len(pickle.dumps(compact(preds))) < len(pickle.dumps(preds)) / 2


def test_entries_it_cannot_hold_are_saved_as_they_are(tmp_path):
    extra = _predictions(False)
    first = next(r for p in extra for r in p["instances"])
    extra[0]["instances"].append(dict(first, keypoints=[1, 2, 3]))
    assert compact(extra) is extra
    polygons = _predictions(True)
    next(r for p in polygons for r in p["instances"])["segmentation"] = [[1.0, 1, 5, 1, 5, 5]]
    assert compact(polygons) is polygons
    proposals = Instances((10, 10), proposal_boxes=Boxes(torch.zeros(2, 4)))
    mixed = _predictions(False) + [{"image_id": 9, "proposals": proposals}]
    small = compact(mixed)
    assert small[-1] is mixed[-1] and expand(small)[:-1] == mixed[:-1]
    path = str(tmp_path / "p.pth")
    save_predictions(path, extra)
    assert load_predictions(path) == extra


def test_compact_json_reads_back_as_json_dumps(tmp_path):
    """coco_instances_results.json through orjson: the values json.dumps writes, read back
    equal (floats to the last bit); integer keys, which orjson refuses, through json."""
    import json

    import numpy as np

    from cxr_d2.evaluation.output import write_json_compact

    rng = np.random.default_rng(0)
    results = [{"image_id": int(i), "category_id": 1, "score": float(s),
                "bbox": [float(v) for v in rng.random(4) * 1e3],
                "segmentation": {"size": [512, 512], "counts": "h\\\\41n?2N1"}}
               for i, s in enumerate(rng.random(50) ** 9)]  # fmt: skip
    path = tmp_path / "r.json"
    write_json_compact(str(path), results)
    assert json.loads(path.read_text()) == json.loads(json.dumps(results)) == results
    write_json_compact(str(path), {3: [0.25]})
    assert json.loads(path.read_text()) == {"3": [0.25]}
