"""
Hostile predictions, ground truths and disks for the evaluator: every bad input ends in one
PredictionError / DatasetError line naming the file, the entry index and the key, and every
failed write in one OutputError line naming the file, with nothing half written.
"""

import errno
import json
import logging
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util

from cxr_d2.errors import DatasetError
from cxr_d2.evaluation import PredictionError
from cxr_d2.evaluation.__main__ import main
from cxr_d2.evaluation.coco import CXRCOCOEvaluator
from cxr_d2.evaluation.ground_truth import check_ground_truth
from cxr_d2.evaluation.regions import decode_counts
from cxr_d2.evaluation.validate import check_results

H, W = 20, 30
IMAGES = {1: (H, W), 2: (H, W)}
CATS = {1, 2}
GOOD = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def _rect_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


RECT_RLE = _rle(_rect_mask(2, 3, 12, 8))


def _check(entry, tasks=("bbox",)):
    return check_results([GOOD, entry], CATS, IMAGES, "predictions file p.json", tasks=tasks)


def _without(key):
    return {k: v for k, v in GOOD.items() if k != key}


# (case, prediction 1, expected message fragment)
BAD_PREDICTIONS = [
    ("no image_id", _without("image_id"), r"prediction 1 has no 'image_id'"),
    ("no category_id", _without("category_id"), r"prediction 1 has no 'category_id'"),
    ("no score", _without("score"), r"prediction 1 has no 'score'"),
    ("unknown image", dict(GOOD, image_id=99), r"prediction 1 is for image_id 99, which"),
    ("image id as text", dict(GOOD, image_id="1"), r"prediction 1 is for image_id '1'"),
    ("image id a list", dict(GOOD, image_id=[1]), r"prediction 1 is for image_id \[1\]"),
    ("image id true", dict(GOOD, image_id=True), r"prediction 1 is for image_id True"),
    ("unknown category", dict(GOOD, category_id=7), r"\(image_id 1\) has category_id 7, wh"),
    ("category as text", dict(GOOD, category_id="1"), r"has category_id '1', which the data"),
    ("category true", dict(GOOD, category_id=True), r"has category_id True, which the data"),
    ("category float", dict(GOOD, category_id=1.0), r"has category_id 1.0, which the data"),
    ("score true", dict(GOOD, score=True), r"has the score True, which is not a finite num"),
    ("score -5", dict(GOOD, score=-5), r"has the score -5, which is outside \[0, 1\]"),
    ("score 1.5", dict(GOOD, score=1.5), r"has the score 1.5, which is outside \[0, 1\]"),
    ("score 1e308", dict(GOOD, score=1e308), r"has the score 1e\+308, which is outside"),
    ("score NaN", dict(GOOD, score=float("nan")), r"has the score nan, which is not a finite"),
    ("score text", dict(GOOD, score="0.5"), r"has the score '0.5', which is not a finite"),
    ("score null", dict(GOOD, score=None), r"has the score None, which is not a finite"),
    ("negative width", dict(GOOD, bbox=[1, 2, -3, 4]), r"\('bbox'\), which has a negative wid"),
    ("negative height", dict(GOOD, bbox=[1, 2, 3, -4]), r"which has a negative height"),
    ("three numbers", dict(GOOD, bbox=[1, 2, 3]), r"has the box \[1, 2, 3\] \('bbox'\), which"),
    ("nested box", dict(GOOD, bbox=[[1, 2, 3, 4]]), r"which is not four finite numbers"),
    ("box as text", dict(GOOD, bbox="1 2 3 4"), r"which is not four finite numbers"),
    ("box with NaN", dict(GOOD, bbox=[float("nan"), 2, 3, 4]), r"box \[nan, 2, 3, 4\]"),
    ("box with inf", dict(GOOD, bbox=[1, 2, float("inf"), 4]), r"not four finite numbers"),
    ("box with bool", dict(GOOD, bbox=[1, 2, True, 4]), r"not four finite numbers"),
    ("box of 1e308", dict(GOOD, bbox=[1e308, 2, 1e308, 4]), r"too large to score"),
    ("no region", _without("bbox"), r"has no 'bbox' and no 'segmentation'"),
    (
        "mask of another size",
        dict(GOOD, segmentation=_rle(np.zeros((H, W + 1)))),
        r"'segmentation' has size \[20, 31\], not the image's \[20, 30\] \(height, width\)",
    ),
    (
        "size not a pair",
        dict(GOOD, segmentation={"size": [H], "counts": RECT_RLE["counts"]}),
        r"'segmentation' has size \[20\], not \[height, width\]",
    ),
    (
        "RLE cut short",
        dict(GOOD, segmentation=dict(RECT_RLE, counts=RECT_RLE["counts"] + "X")),
        r"'segmentation' has RLE counts that do not decode: the string ends inside a number",
    ),
    (
        "RLE with a stray character",
        dict(GOOD, segmentation=dict(RECT_RLE, counts="\x7f" + RECT_RLE["counts"])),
        r"the string holds characters outside '0'..'o'",
    ),
    (
        "RLE not ASCII",
        dict(GOOD, segmentation=dict(RECT_RLE, counts="é" + RECT_RLE["counts"])),
        r"the string holds characters that are not ASCII",
    ),
    (
        "RLE runs too few",
        dict(GOOD, segmentation=dict(RECT_RLE, counts=RECT_RLE["counts"][:-2])),
        r"has RLE runs adding up to \d+ pixels, not the image's 20 x 30 = 600",
    ),
    (
        "RLE negative run",
        dict(GOOD, segmentation={"size": [H, W], "counts": [700, -100]}),
        r"has RLE counts with a negative run",
    ),
    (
        "RLE counts a number",
        dict(GOOD, segmentation={"size": [H, W], "counts": 600}),
        r"RLE counts that are neither a compressed string nor a list of integers",
    ),
    (
        "polygon of 2 points",
        dict(GOOD, segmentation=[[1, 1, 5, 5]]),
        r"has a polygon of 4 numbers; a polygon needs 3 or more \(x, y\) points",
    ),
    (
        "polygon with NaN",
        dict(GOOD, segmentation=[[1, 1, 5, 5, float("nan"), 3]]),
        r"has a polygon coordinate that is not finite",
    ),
    (
        "polygon far away",
        dict(GOOD, segmentation=[[1, 1, 5, 5, 1e9, 3]]),
        r"has a polygon point far outside the image \(30 x 20 pixels\)",
    ),
    (
        "segmentation as text",
        dict(GOOD, segmentation="mask.png"),
        r"'segmentation' is neither an RLE \{size, counts\} nor a list of polygons",
    ),
]


@pytest.mark.parametrize(
    "entry,match", [c[1:] for c in BAD_PREDICTIONS], ids=[c[0] for c in BAD_PREDICTIONS]
)
def test_bad_prediction_names_file_entry_and_key(entry, match):
    with pytest.raises(PredictionError, match=r"^predictions file p\.json: .*" + match):
        _check(entry)


def test_segm_evaluation_needs_every_mask():
    with pytest.raises(PredictionError, match=r"prediction 0 \(image_id 1\) has no 'segmen"):
        _check(dict(GOOD, segmentation=RECT_RLE), tasks=("bbox", "segm"))


def test_entry_that_is_not_an_object():
    with pytest.raises(PredictionError, match=r"prediction 1 is a list, not an object"):
        check_results([GOOD, [GOOD]], CATS, IMAGES, "predictions file p.json")


# (case, prediction 1 accepted, the mask it is scored as or None)
GOOD_PREDICTIONS = [
    ("zero-size box (as COCO)", dict(GOOD, bbox=[1, 2, 0, 0]), None),
    ("score 0", dict(GOOD, score=0), None),
    ("score 1", dict(GOOD, score=1), None),
    ("string image id", dict(GOOD, image_id="x1"), None),
    ("compressed RLE", dict(GOOD, segmentation=RECT_RLE), _rect_mask(2, 3, 12, 8)),
    (
        "uncompressed RLE",
        dict(
            GOOD,
            segmentation={"size": [H, W], "counts": decode_counts(RECT_RLE["counts"]).tolist()},
        ),
        _rect_mask(2, 3, 12, 8),
    ),
    ("polygon", dict(GOOD, segmentation=[[2, 3, 12, 3, 12, 8, 2, 8]]), _rect_mask(2, 3, 12, 8)),
    ("mask without box", dict(_without("bbox"), segmentation=RECT_RLE), _rect_mask(2, 3, 12, 8)),
]


@pytest.mark.parametrize(
    "entry,mask", [c[1:] for c in GOOD_PREDICTIONS], ids=[c[0] for c in GOOD_PREDICTIONS]
)
def test_good_prediction_is_scored_as_given(entry, mask):
    images = dict(IMAGES, x1=(H, W))
    out = check_results(
        [entry], CATS, images, "p.json", tasks=("bbox", "segm") if mask is not None else ("bbox",)
    )
    (r,) = out
    assert {k: r[k] for k in ("image_id", "category_id", "score")} == {
        k: entry[k] for k in ("image_id", "category_id", "score")
    }
    if mask is None:
        assert r is entry
        return
    assert isinstance(r["segmentation"]["counts"], str)
    decoded = mask_util.decode(dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()))
    np.testing.assert_array_equal(decoded, mask)
    ys, xs = np.nonzero(mask)  # the box of the mask, computed here: x2 = last column + 1
    box = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
    assert r["bbox"] == (entry["bbox"] if "bbox" in entry else box)


def test_rle_decoder_equals_pycocotools_on_random_masks():
    rng = np.random.default_rng(0)
    for t in range(60):
        h, w = (int(v) for v in rng.integers(1, 120, 2))
        mask = rng.random((h, w)) < (0.0 if t % 7 == 0 else rng.random())
        rle = _rle(mask)
        runs = decode_counts(rle["counts"])
        assert runs.sum() == h * w and (runs >= 0).all()
        again = mask_util.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
        assert again["counts"].decode() == rle["counts"]


# ---- results files through `python -m cxr_d2.evaluation` --------------------------------------

GT = {1: [([2, 3, 12, 8], 0)], 2: [([5, 5, 15, 15], 1)]}


@pytest.fixture
def dataset():
    from detectron2.structures import BoxMode

    name = "cxr_test_validate"
    dicts = [
        {
            "file_name": f"img{i}.png",
            "image_id": i,
            "height": H,
            "width": W,
            "annotations": [
                {
                    "bbox": b,
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": c,
                    "iscrowd": 0,
                    "segmentation": _rle(_rect_mask(*b)),
                }
                for b, c in anns
            ],
        }
        for i, anns in GT.items()
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"], evaluator_type="coco")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _good_file_results():
    # Category ids of the converted COCO json are the contiguous ids 0, 1.
    return [
        {
            "image_id": i,
            "category_id": c,
            "score": 0.9,
            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
        }
        for i, anns in GT.items()
        for b, c in anns
    ]


BAD_FILES = [
    ("not JSON", b"image_id,score\n1,0.5\n", r"is not valid JSON \(Expecting value"),
    ("empty file", b"", r"is not valid JSON"),
    ("truncated", json.dumps(_good_file_results()).encode()[:-7], r"is not valid JSON"),
    ("not UTF-8", b'[{"image_id": 1, "x": "\xff\xfe"}]', r"is not UTF-8 text"),
    ("an object", b'{"annotations": []}', r"must hold a JSON list .* not a JSON object"),
    ("a number", b"42", r"not a JSON number"),
    ("extra nesting", json.dumps([_good_file_results()]).encode(), r"prediction 0 is a list"),
    (
        "NaN score",
        json.dumps([dict(_good_file_results()[0], score=float("nan"))]).encode(),
        r"prediction 0 \(image_id 1\) has the score nan",
    ),
    (
        "1e308 in a box",
        json.dumps([dict(_good_file_results()[0], bbox=[1e308, 0, 1e308, 1])]).encode(),
        r"prediction 0 \(image_id 1\) has the box .*too large",
    ),
    (
        "category id as text",
        json.dumps([dict(_good_file_results()[0], category_id="0")]).encode(),
        r"prediction 0 \(image_id 1\) has category_id '0'",
    ),
    (
        "one bad among good",
        json.dumps(_good_file_results() + [dict(_good_file_results()[0], score=True)]).encode(),
        r"prediction 2 \(image_id 1\) has the score True",
    ),
]


@pytest.mark.parametrize("content,match", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_results_file_stops_the_run_in_one_line(content, match, dataset, tmp_path):
    path = tmp_path / "preds.json"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--dataset", dataset])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: predictions file {path}") and "\n" not in message
    assert __import__("re").search(match, message), message
    assert not (tmp_path / "evaluation.json").exists()  # nothing scored, nothing written


def test_empty_results_file_scores_zero(dataset, tmp_path):
    path = tmp_path / "preds.json"
    path.write_text("[]")
    assert main([str(path), "--dataset", dataset]) == 0
    metrics = json.loads((tmp_path / "evaluation.json").read_text())
    assert metrics["num_predictions"] == 0 and metrics["tasks"]["bbox"]["AP"] == 0.0


def test_masks_as_polygons_score_as_their_rle(dataset, tmp_path):
    """Polygon and RLE predictions of the same rectangles give the same (perfect) mask AP."""
    polys = [
        dict(
            r,
            segmentation=[
                [b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3], b[0], b[1] + b[3]]
            ],
        )
        for r in _good_file_results()
        for b in [r["bbox"]]
    ]
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(polys))
    assert main([str(path), "--dataset", dataset]) == 0
    metrics = json.loads((tmp_path / "evaluation.json").read_text())
    assert metrics["tasks"]["segm"]["AP"] == pytest.approx(100.0)


# ---- ground truth given to the evaluator --------------------------------------------------


def _gt():
    return {
        "images": [{"id": 1, "height": H, "width": W, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 1, 5, 5],
                "area": 25.0,
                "iscrowd": 0,
            }
        ],
    }


def _edit(change):
    gt = _gt()
    change(gt)
    return gt


BAD_GROUND_TRUTHS = [
    ("a list", [], r"is a JSON list, not a COCO object"),
    ("no images", _edit(lambda g: g.pop("images")), r"has no 'images' list"),
    ("images an object", _edit(lambda g: g.update(images={})), r"'images' is a dict, not a"),
    ("image a number", _edit(lambda g: g.update(images=[1])), r"images\[0\] is a int, not an obj"),
    (
        "no height",
        _edit(lambda g: g["images"][0].pop("height")),
        r"images\[0\] \(id 1\) has 'height' None",
    ),
    (
        "width 0",
        _edit(lambda g: g["images"][0].update(width=0)),
        r"images\[0\] \(id 1\) has 'width' 0",
    ),
    (
        "repeated image id",
        _edit(lambda g: g["images"].append(dict(g["images"][0]))),
        r"images\[1\] repeats 'id' 1",
    ),
    (
        "category without name",
        _edit(lambda g: g["categories"][0].pop("name")),
        r"categories\[0\] \(id 1\) has no 'name'",
    ),
    (
        "annotation without id",
        _edit(lambda g: g["annotations"][0].pop("id")),
        r"annotations\[0\] has 'id' None",
    ),
    (
        "unknown image",
        _edit(lambda g: g["annotations"][0].update(image_id=9)),
        r"annotations\[0\] \(id 1\) 'image_id' 9 is not",
    ),
    (
        "unknown category",
        _edit(lambda g: g["annotations"][0].update(category_id=[1])),
        r"'category_id' \[1\] is not a category",
    ),
    (
        "negative box",
        _edit(lambda g: g["annotations"][0].update(bbox=[1, 1, -5, 5])),
        r"'bbox' \[1, 1, -5, 5\] has a negative width",
    ),
    (
        "no area",
        _edit(lambda g: g["annotations"][0].pop("area")),
        r"'area' None is not a number >= 0",
    ),
    (
        "iscrowd 2",
        _edit(lambda g: g["annotations"][0].update(iscrowd=2)),
        r"'iscrowd' 2 is not 0 or 1",
    ),
    (
        "mask of another size",
        _edit(lambda g: g["annotations"][0].update(segmentation=_rle(np.zeros((H, H))))),
        r"'segmentation' has size \[20, 20\], not the image's \[20, 30\]",
    ),
]


@pytest.mark.parametrize(
    "gt,match", [c[1:] for c in BAD_GROUND_TRUTHS], ids=[c[0] for c in BAD_GROUND_TRUTHS]
)
def test_bad_ground_truth_names_entry_and_key(gt, match):
    with pytest.raises(DatasetError, match=r"^ground truth g\.json.*" + match):
        check_ground_truth(gt, "ground truth g.json")


def test_good_ground_truth_passes():
    check_ground_truth(_gt(), "g.json")
    check_ground_truth(_edit(lambda g: g.pop("annotations")), "g.json")  # a test set


@pytest.fixture
def json_dataset(tmp_path):
    name = "cxr_test_validate_json"
    path = tmp_path / "gt.json"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(thing_classes=["a"], json_file=str(path))
    yield name, path
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"\x89PNG\r\n", r"is not UTF-8 text"),
        (b'{"images": [', r"cannot be read as JSON"),
        (json.dumps({"images": {}}).encode(), r"'images' is a dict, not a list"),
    ],
    ids=["not UTF-8", "truncated", "wrong shape"],
)
def test_bad_json_file_of_a_dataset_ends_in_one_line(content, match, json_dataset, tmp_path):
    name, path = json_dataset
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=rf"^ground truth {path}.*{match}"):
        CXRCOCOEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))


def test_unreadable_converted_cache_is_rebuilt(dataset, tmp_path, caplog):
    cache = tmp_path / f"{dataset}_coco_format.json"
    cache.write_text('{"images": [')  # cut by a crash
    with caplog.at_level(logging.WARNING, logger="cxr_d2.evaluation.coco"):
        ev = CXRCOCOEvaluator(dataset, distributed=False, output_dir=str(tmp_path))
    assert any("removed, to convert" in r.getMessage() for r in caplog.records)
    assert len(ev._coco_api.getImgIds()) == 2
    assert len(json.loads(cache.read_text())["images"]) == 2


# ---- full disk, read-only disk, quota -----------------------------------------------------


class _FailingFile:
    """A binary file whose writes fail with `code`, as a full disk does."""

    def __init__(self, f, code):
        self._f, self._code = f, code

    def write(self, data):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _fail_writes(monkeypatch, target, code):
    """Make every write of a file whose name starts with `target` fail with errno `code`."""
    from cxr_d2.engine import checkpoint

    def opener(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        if "w" in mode and os.path.basename(path).startswith(target):
            return _FailingFile(f, code)
        return f

    monkeypatch.setattr(checkpoint, "open", opener, raising=False)


@pytest.mark.parametrize(
    "target,code,todo",
    [
        ("evaluation.json", errno.ENOSPC, "free space on that disk"),
        ("froc_bbox.png", errno.ENOSPC, "free space on that disk"),
        ("evaluation.json", errno.EDQUOT, "free space within your disk quota"),
        ("evaluation.json", errno.EROFS, "the disk is read-only"),
    ],
)
def test_failed_write_of_the_cli_ends_in_one_line_and_keeps_the_old_file(
    target, code, todo, dataset, tmp_path, monkeypatch
):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(_good_file_results()))
    (tmp_path / "evaluation.json").write_text('{"old": true}')
    _fail_writes(monkeypatch, target, code)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--dataset", dataset])
    message = str(exit_info.value.code)
    assert message == (
        f"error: cannot write {tmp_path / target} ({os.strerror(code)}); {todo}"
        + message.split(todo, 1)[1]
    )
    assert "\n" not in message
    assert json.loads((tmp_path / "evaluation.json").read_text()) == {"old": True}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("target", ["instances_predictions.pth", "coco_instances_results.json"])
def test_failed_write_during_eval_only_is_an_output_error(target, dataset, tmp_path, monkeypatch):
    """The files Trainer.test's evaluator writes (as --eval-only runs it)."""
    import torch
    from detectron2.structures import Boxes, Instances

    from cxr_d2.evaluation.output import OutputError

    ev = CXRCOCOEvaluator(dataset, distributed=False, output_dir=str(tmp_path))
    ev.reset()
    for i, anns in GT.items():
        inst = Instances((H, W))
        inst.pred_boxes = Boxes(torch.tensor([b for b, _ in anns], dtype=torch.float32))
        inst.scores = torch.tensor([0.9] * len(anns))
        inst.pred_classes = torch.tensor([c for _, c in anns])
        ev.process([{"image_id": i, "height": H, "width": W}], [{"instances": inst}])
    _fail_writes(monkeypatch, target, errno.ENOSPC)
    with pytest.raises(OutputError, match=rf"^cannot write {tmp_path / target} \(No space left"):
        ev.evaluate()
    assert not (tmp_path / target).exists() and not list(tmp_path.glob("*.tmp"))


def test_failed_conversion_of_the_dataset_names_the_cache(dataset, tmp_path, monkeypatch):
    from cxr_d2.evaluation.output import OutputError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", full)
    cache = tmp_path / f"{dataset}_coco_format.json"
    with pytest.raises(OutputError, match=rf"^cannot write {cache} \(No space left on device\)"):
        CXRCOCOEvaluator(dataset, distributed=False, output_dir=str(tmp_path))
    assert not cache.exists() and not list(tmp_path.glob("*.tmp"))
