"""The YouTube-VIS loader: records, boxes from masks by a pixel loop, bad input reported."""
import json
import logging

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_d2.data.datasets.youtube_vis import load_youtube_vis_json, register_youtube_vis
from cxr_d2.errors import DatasetError
from cxr_d2.evaluation.vis import evaluate_vis

H, W = 24, 30


def uncompressed(mask):
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": [H, W], "counts": counts}


def blob(x, y, w, h):
    m = np.zeros((H, W), np.uint8)
    m[y : y + h, x : x + w] = 1
    m[y, x] = 0  # not a plain rectangle
    return m


def loop_box(mask):
    ys = [y for y in range(H) for x in range(W) if mask[y, x]]
    xs = [x for y in range(H) for x in range(W) if mask[y, x]]
    return [min(xs), min(ys), max(xs) + 1, max(ys) + 1]


@pytest.fixture
def vis_set(tmp_path):
    masks = [blob(2, 3, 6, 5), blob(4, 3, 6, 5), None]
    data = {
        "videos": [{"id": 7, "file_names": [f"p1/{t}.png" for t in range(3)], "height": H,
                    "width": W, "length": 3}],
        "categories": [{"id": 3, "name": "nodule"}, {"id": 1, "name": "effusion"}],
        "annotations": [
            {"id": 11, "video_id": 7, "category_id": 3, "iscrowd": 0,
             "segmentations": [uncompressed(m) if m is not None else None for m in masks]},
            {"id": 12, "video_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentations": [None, [[20, 10, 28, 10, 28, 20, 20, 20]], None]},
        ],
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path, data, masks


def test_records_boxes_and_identities(vis_set, tmp_path):
    path, data, masks = vis_set
    (seq,) = load_youtube_vis_json(str(path), str(tmp_path / "imgs"), "vis_test_meta")
    assert seq["video_id"] == 7 and seq["length"] == 3 and (seq["height"], seq["width"]) == (H, W)
    assert seq["file_names"] == [str(tmp_path / "imgs" / f"p1/{t}.png") for t in range(3)]
    frames = seq["annotations"]
    assert [len(f) for f in frames] == [1, 2, 0]
    for t in (0, 1):
        nodule = next(a for a in frames[t] if a["id"] == 11)
        assert nodule["bbox"] == loop_box(masks[t]) and nodule["bbox_mode"] == BoxMode.XYXY_ABS
        assert nodule["category_id"] == 0  # the json's first category
    polygon = next(a for a in frames[1] if a["id"] == 12)
    assert polygon["category_id"] == 1 and polygon["bbox"] == [20.0, 10.0, 28.0, 20.0]
    meta = MetadataCatalog.get("vis_test_meta")
    assert meta.thing_classes == ["nodule", "effusion"]
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 1: 1}


def test_perfect_tracks_score_one(vis_set):
    path, data, _ = vis_set
    results = [dict(a, score=0.9) for a in data["annotations"]]
    for r in results:
        r["segmentations"] = [
            None if s is None else
            (mask_util.merge(mask_util.frPyObjects(s, H, W)) if isinstance(s, list)
             else mask_util.frPyObjects(s, H, W))
            for s in r["segmentations"]
        ]
    assert evaluate_vis(data, results)["AP"] == pytest.approx(1.0)


def test_bad_tracks_are_reported_and_counted(vis_set, tmp_path, caplog):
    path, data, _ = vis_set
    data["annotations"].append({"id": 13, "video_id": 7, "category_id": 3,
                                "segmentations": [None, None]})
    data["annotations"].append({"id": 14, "video_id": 99, "category_id": 3,
                                "segmentations": [None] * 3})
    data["annotations"][0]["segmentations"][2] = {"size": [H, W], "counts": [5, 3]}
    data["videos"].append({"id": 8, "file_names": ["../../etc/passwd"], "height": H, "width": W})
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        (seq,) = load_youtube_vis_json(str(path), str(tmp_path / "imgs"), "vis_test_bad")
    text = caplog.text
    assert "annotations[2].segmentations: 2 entries for a video of 3 frames" in text
    assert "annotations[3].video_id: 99 is not a video that was read" in text
    assert "annotations[0].segmentations[2]" in text and "frame of the track is skipped" in text
    assert "videos[1]" in text and "outside the dataset folder" in text
    assert "skipped 1 frame mask(s), 2 track(s), 1 video(s)" in text
    assert [len(f) for f in seq["annotations"]] == [1, 2, 0]


def test_not_a_vis_file(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match="coco.json: videos: expected a list.*YouTube-VIS"):
        load_youtube_vis_json(str(path), str(tmp_path))


def test_registered_lazily(vis_set, tmp_path):
    path, _, _ = vis_set
    register_youtube_vis("vis_test_reg_train", str(path), str(tmp_path / "imgs"))
    assert MetadataCatalog.get("vis_test_reg_train").evaluator_type == "youtube_vis"
    assert len(DatasetCatalog.get("vis_test_reg_train")) == 1
    assert "youtube_vis_2019_train" in DatasetCatalog.list()
