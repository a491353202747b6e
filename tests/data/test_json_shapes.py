"""
JSON annotation files of the wrong shape, one case per class of fault: a file that cannot be
used raises one DatasetError line naming it; a value of the wrong shape is one line naming the
file and the JSON path, and its image or annotation is skipped and counted.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cxr_d2.data.checks import ProblemLog
from cxr_d2.data.datasets import SOURCES
from cxr_d2.errors import DatasetError

SIZE = 16


def _png(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((SIZE, SIZE), 100, np.uint8)).save(path)


def _write(path, data):
    """`data`: bytes as they are, else JSON (NaN written as the bare token NaN)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else json.dumps(data).encode())


def _parse(source, root):
    log = ProblemLog(source)
    return SOURCES[source].parse(str(root), list(SOURCES[source].classes), log), log


def _check(path, records, log, expected, good_images, good_annotations, with_image=False):
    """
    `expected`: (fragment, {what: count skipped}). `with_image`: a skipped image's
    annotations go with it uncounted (a list entry holds its findings), else they are
    reported and counted on their own (COCO).
    """
    fragment, skipped = expected
    lines = [str(p) for p in log.problems]
    hits = [line for line in lines if fragment in line]
    assert len(hits) == 1 and hits[0].startswith(str(path)), (fragment, lines)
    assert all("\n" not in line for line in lines)
    assert dict(log.skipped) == skipped, lines
    lost_images = skipped.get("image", 0)
    assert len(records) == good_images - lost_images
    kept = sum(len(r["annotations"]) for r in records)
    lost = skipped.get("annotation", 0) + (lost_images if with_image else 0)
    assert kept == good_annotations - lost


def _raises(source, root, path, fragment):
    with pytest.raises(DatasetError) as e:
        _parse(source, root)
    line = str(e.value)
    assert line.startswith(str(path)) and fragment in line and "\n" not in line, line


# ------------------------------------------------------------------------------------------
# COCO files: TBX11K's json and UML/Perú's annotations.json
# ------------------------------------------------------------------------------------------

IMG, ANN = "images", "annotations"


def _coco(source):
    """Two images, one annotation each, valid for `source`."""
    classes = SOURCES[source].classes
    prefix = "tb/" if source == "tbx11k" else ""
    images = [
        {"id": i, "file_name": f"{prefix}tb000{i}.png", "width": SIZE, "height": SIZE}
        for i in (1, 2)
    ]
    anns = []
    for i in (1, 2):
        ann = {"id": 10 + i, "image_id": i, "category_id": 1, "iscrowd": 0}
        if source == "tbx11k":
            ann["bbox"] = [2, 3, 5, 6]
        else:
            ann["segmentation"] = [[2.0, 2.0, 9.0, 2.0, 9.0, 9.0, 2.0, 9.0]]
        anns.append(ann)
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def _coco_dataset(source, root, edit):
    """Writes the two images and the (edited) COCO file; returns the file's path."""
    if source == "tbx11k":
        folder, path = root / "imgs" / "tb", root / "annotations" / "json" / "TBX11K_train.json"
        _write(
            root / "annotations" / "json" / "TBX11K_val.json", _coco(source) | {IMG: [], ANN: []}
        )
    else:
        folder, path = root / "images", root / "annotations.json"
    for i in (1, 2):
        _png(str(folder / f"tb000{i}.png"))
    coco = _coco(source)
    data = edit(coco)
    _write(path, coco if data is None else data)
    return path


def _set(where, key, value):
    """An edit setting coco[where][0][key] = value (deleting it for value `...`)."""

    def edit(coco):
        item = coco[where][0]
        if value is ...:
            del item[key]
        else:
            item[key] = value

    return edit


def _top(key, value):
    def edit(coco):
        if value is ...:
            del coco[key]
        else:
            coco[key] = value

    return edit


def _replace(where, value):
    def edit(coco):
        coco[where][0] = value

    return edit


def _nest(depth):
    return lambda coco: ("[" * depth + "]" * depth).encode()


one_image, one_ann = {"image": 1}, {"annotation": 1}
# A COCO image skipped: its annotation is reported and counted too.
image_and_ann, both_anns = {"image": 1, "annotation": 1}, {"annotation": 2}


def _second_image_id_of_first(coco):
    coco[IMG][1]["id"] = coco[IMG][0]["id"]


COCO_CASES = [
    # (id, edit of the valid file, expected)
    ("root_list", lambda c: [c], ("error", "expected a JSON object at the top, got [")),
    ("root_string", lambda c: "images", ("error", "got 'images'")),
    ("not_json", lambda c: b"{'images': []}", ("error", "not valid JSON")),
    ("truncated", lambda c: json.dumps(c)[:40].encode(), ("error", "not valid JSON")),
    ("not_utf8", lambda c: json.dumps(c).encode("utf-16"), ("error", "not UTF-8")),
    (
        "latin1",
        lambda c: json.dumps(c | {"x": "Perú"}, ensure_ascii=False).encode("latin-1"),
        ("error", "not UTF-8"),
    ),
    ("deep", _nest(100000), ("error", "nested too deeply")),
    (
        "int_too_long",
        lambda c: b'{"images": [], "x": ' + b"9" * 5000 + b"}",
        ("error", "not valid JSON"),
    ),
    ("images_missing", _top(IMG, ...), ("error", "images: expected a list, got nothing")),
    ("images_dict", _top(IMG, {}), ("error", "images: expected a list, got {}")),
    ("categories_string", _top("categories", "TB"), ("error", "categories: expected a list")),
    (
        "image_string",
        _replace(IMG, "tb0001.png"),
        ("images[0]: expected an object, got 'tb0001.png'", image_and_ann),
    ),
    (
        "file_name_int",
        _set(IMG, "file_name", 17),
        ("images[0].file_name: expected a string, got 17", image_and_ann),
    ),
    (
        "file_name_empty",
        _set(IMG, "file_name", " "),
        ("images[0].file_name: expected a string, got ' '", image_and_ann),
    ),
    (
        "file_name_missing",
        _set(IMG, "file_name", ...),
        ("images[0].file_name: expected a string, got nothing", image_and_ann),
    ),
    (
        "id_missing",
        _set(IMG, "id", ...),
        ("images[0].id: expected an integer or string, got nothing", image_and_ann),
    ),
    (
        "id_nan",
        _set(IMG, "id", float("nan")),
        ("images[0].id: expected an integer or string, got nan", image_and_ann),
    ),
    (
        "id_bool",
        _set(IMG, "id", True),
        ("images[0].id: expected an integer or string", image_and_ann),
    ),
    (
        "id_list",
        _set(IMG, "id", [1]),
        ("images[0].id: expected an integer or string", image_and_ann),
    ),
    (
        "width_text",
        _set(IMG, "width", "abc"),
        ("images[0].width: expected a positive integer, got 'abc'", image_and_ann),
    ),
    ("width_zero", _set(IMG, "width", 0), ("images[0].width: expected a positive", image_and_ann)),
    (
        "width_fraction",
        _set(IMG, "width", 15.5),
        ("images[0].width: expected a positive", image_and_ann),
    ),
    (
        "height_missing",
        _set(IMG, "height", ...),
        ("images[0].height: expected a positive integer, got nothing", image_and_ann),
    ),
    (
        "height_nan",
        _set(IMG, "height", float("nan")),
        ("images[0].height: expected", image_and_ann),
    ),
    ("height_huge", _set(IMG, "height", 10**400), ("images[0].height: expected", image_and_ann)),
    (
        "size_over_pixel_limit",
        _set(IMG, "height", 10**12),
        ("more pixels than CXR.DATA.MAX_IMAGE_PIXELS", image_and_ann),
    ),
    ("duplicate_image_id", _second_image_id_of_first, ("listed twice", image_and_ann)),
    (
        "category_without_name",
        _set("categories", "name", ...),
        ("categories[0].name: expected a string, got nothing", both_anns),
    ),
    (
        "category_name_int",
        _set("categories", "name", 5),
        ("categories[0].name: expected a string, got 5", both_anns),
    ),
    (
        "category_string",
        _replace("categories", "ActiveTuberculosis"),
        ("categories[0]: expected an object", both_anns),
    ),
    (
        "category_id_unknown",
        _set(ANN, "category_id", 99),
        ("annotations[0].category_id: 99 is not an id of the categories list", one_ann),
    ),
    (
        "category_id_missing",
        _set(ANN, "category_id", ...),
        ("annotations[0].category_id: expected an integer or string, got nothing", one_ann),
    ),
    ("annotation_number", _replace(ANN, 5), ("annotations[0]: expected an object, got 5", one_ann)),
    (
        "image_id_unknown",
        _set(ANN, "image_id", 12345),
        ("image id 12345 is not in the images list", one_ann),
    ),
    (
        "image_id_list",
        _set(ANN, "image_id", [1]),
        ("annotations[0].image_id: expected an integer or string, got [1]", one_ann),
    ),
]

BBOX_CASES = [  # TBX11K's json only: COCO [x, y, w, h] boxes
    ("bbox_3_numbers", _set(ANN, "bbox", [1, 2, 3]), ("got [1, 2, 3]", one_ann)),
    (
        "bbox_strings",
        _set(ANN, "bbox", ["2", "3", "5", "6"]),
        ("bbox: expected 4 finite numbers, got ['2'", one_ann),
    ),
    ("bbox_string", _set(ANN, "bbox", "2356"), ("bbox: expected 4 finite numbers", one_ann)),
    ("bbox_nan", _set(ANN, "bbox", [2, float("nan"), 5, 6]), ("got [2, nan, 5, 6]", one_ann)),
    ("bbox_huge_int", _set(ANN, "bbox", [2, 3, 10**400, 6]), ("bbox: expected 4", one_ann)),
    ("bbox_bool", _set(ANN, "bbox", [2, 3, True, 6]), ("bbox: expected 4", one_ann)),
    (
        "bbox_missing",
        _set(ANN, "bbox", ...),
        ("bbox: expected 4 finite numbers, got None", one_ann),
    ),
    ("bbox_outside", _set(ANN, "bbox", [100, 100, 5, 5]), ("wholly outside", one_ann)),
]

SEGMENTATION_CASES = [  # UML/Perú only: masks
    ("segmentation_number", _set(ANN, "segmentation", 17), ("unusable segmentation", one_ann)),
    ("segmentation_missing", _set(ANN, "segmentation", ...), ("unusable segmentation", one_ann)),
]


def _cases():
    for source in ("tbx11k", "uml_peru"):
        extra = BBOX_CASES if source == "tbx11k" else SEGMENTATION_CASES
        for case_id, edit, expected in COCO_CASES + extra:
            yield pytest.param(source, edit, expected, id=f"{source}-{case_id}")


@pytest.mark.parametrize("source,edit,expected", list(_cases()))
def test_coco_json_of_the_wrong_shape(tmp_path, source, edit, expected):
    path = _coco_dataset(source, tmp_path, edit)
    if expected[0] == "error":
        _raises(source, tmp_path, path, expected[1])
        return
    records, log = _parse(source, tmp_path)
    _check(path, records, log, expected, good_images=2, good_annotations=2)


# ------------------------------------------------------------------------------------------
# ChestX-Det10 / ChestX-Det JSON lists
# ------------------------------------------------------------------------------------------

DET = {
    "chestx_det10": ("train.json", "test.json", "train_data"),
    "chestx_det": ("ChestX_Det_train.json", "ChestX_Det_test.json", "train"),
}


def _entries():
    return [
        {
            "file_name": f"{i}.png",
            "syms": ["Nodule"],
            "boxes": [[2, 3, 7, 8]],
            "polygons": [[[2, 3], [7, 3], [7, 8]]],
        }
        for i in (1, 2)
    ]


def _det_dataset(source, root, edit):
    train, test, folder = DET[source]
    for i in (1, 2):
        _png(str(root / folder / f"{i}.png"))
    _write(root / test, [])
    entries = _entries()
    data = edit(entries)
    _write(root / train, entries if data is None else data)
    return root / train


def _entry(key, value):
    def edit(entries):
        if value is ...:
            del entries[0][key]
        else:
            entries[0][key] = value

    return edit


def _finding(key, value):
    def edit(entries):
        entries[0][key][0] = value

    return edit


DET_CASES = [
    # (id, edit, expected, sources: both unless "polygons")
    ("root_dict", lambda e: {"images": e}, ("error", "expected a JSON list at the top, got {")),
    ("root_string", lambda e: "1.png", ("error", "expected a JSON list at the top, got '1.png'")),
    ("not_json", lambda e: b"[{file_name: 1.png}]", ("error", "not valid JSON")),
    ("not_utf8", lambda e: b'[{"file_name": "\xff.png"}]', ("error", "not UTF-8")),
    ("deep", _nest(100000), ("error", "nested too deeply")),
    (
        "entry_string",
        lambda e: ["1.png", e[1]],
        ("[0]: expected an object, got '1.png'", one_image),
    ),
    ("entry_null", lambda e: [None, e[1]], ("[0]: expected an object, got None", one_image)),
    (
        "file_name_int",
        _entry("file_name", 17),
        ("[0].file_name: expected a string, got 17", one_image),
    ),
    (
        "file_name_missing",
        _entry("file_name", ...),
        ("[0].file_name: expected a string, got nothing", one_image),
    ),
    (
        "syms_string",
        _entry("syms", "Nodule"),
        ("[0].syms: expected a list, got 'Nodule'", one_image),
    ),
    ("boxes_dict", _entry("boxes", {"0": [1, 2, 3, 4]}), ("[0].boxes: expected a list", one_image)),
    ("sym_int", _finding("syms", 3), ("[0].syms[0]: expected a string, got 3", one_image)),
    ("sym_unknown", _finding("syms", "Cough"), ("unknown class name 'Cough'", one_ann)),
    (
        "box_3_numbers",
        _finding("boxes", [1, 2, 3]),
        ("[0].boxes[0]: expected 4 finite numbers, got [1, 2, 3]", one_ann),
    ),
    ("box_strings", _finding("boxes", ["2", "3", "7", "8"]), ("[0].boxes[0]: expected 4", one_ann)),
    ("box_string", _finding("boxes", "2378"), ("[0].boxes[0]: expected 4", one_ann)),
    ("box_nan", _finding("boxes", [2, 3, float("nan"), 8]), ("got [2, 3, nan, 8]", one_ann)),
    ("box_inf", _finding("boxes", [2, 3, float("inf"), 8]), ("got [2, 3, inf, 8]", one_ann)),
    ("box_huge_int", _finding("boxes", [2, 3, 10**400, 8]), ("[0].boxes[0]: expected 4", one_ann)),
    ("box_inverted", _finding("boxes", [7, 3, 2, 8]), ("x2 < x1", one_ann)),
    ("duplicate", lambda e: [e[0], dict(e[0])], ("image listed twice", one_image)),
    ("unpaired", _entry("boxes", []), ("1 syms and 0 boxes", one_ann)),
    (
        "polygon_string",
        _finding("polygons", "2,3,7,3,7,8"),
        ("[0].polygons[0]: expected a list", one_ann),
        "polygons",
    ),
    (
        "polygon_2_points",
        _finding("polygons", [[2, 3], [7, 3]]),
        ("[0].polygons[0]: expected at least 3 [x, y] points, got 2", one_ann),
        "polygons",
    ),
    (
        "polygon_point_text",
        _finding("polygons", [[2, 3], ["a", "b"], [7, 8]]),
        ("[0].polygons[0][1]: expected 2 finite numbers, got ['a', 'b']", one_ann),
        "polygons",
    ),
    (
        "polygon_point_3d",
        _finding("polygons", [[2, 3, 1], [7, 3], [7, 8]]),
        ("[0].polygons[0][0]: expected 2 finite numbers", one_ann),
        "polygons",
    ),
]


def _det_cases():
    for source in DET:
        for case_id, edit, expected, *only in DET_CASES:
            if only and source != "chestx_det":
                continue
            yield pytest.param(source, edit, expected, id=f"{source}-{case_id}")


@pytest.mark.parametrize("source,edit,expected", list(_det_cases()))
def test_det_json_list_of_the_wrong_shape(tmp_path, source, edit, expected):
    path = _det_dataset(source, tmp_path, edit)
    if expected[0] == "error":
        _raises(source, tmp_path, path, expected[1])
        return
    records, log = _parse(source, tmp_path)
    _check(path, records, log, expected, good_images=2, good_annotations=2, with_image=True)


@pytest.mark.parametrize("source", ["tbx11k", "uml_peru"])
def test_valid_coco_loads_whole(tmp_path, source):
    _coco_dataset(source, tmp_path, lambda coco: None)
    records, log = _parse(source, tmp_path)
    assert not log.problems and len(records) == 2
    assert [len(r["annotations"]) for r in records] == [1, 1]


@pytest.mark.parametrize("source", sorted(DET))
def test_valid_det_list_loads_whole(tmp_path, source):
    _det_dataset(source, tmp_path, lambda entries: None)
    records, log = _parse(source, tmp_path)
    assert not log.problems and [len(r["annotations"]) for r in records] == [1, 1]
