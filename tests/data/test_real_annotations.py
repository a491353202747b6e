"""
TBX11K's published VOC XML (boxes in the original scan's pixels) loaded onto the released
512x512 PNGs, against the official json conversion (torchxrayvision's copy of
TBX11K_train.json) and a hand computation from the XML; malformed XML, one class at a time.
"""

import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image

from cxr_d2.data.checks import ProblemLog
from cxr_d2.data.datasets.common import register_source
from cxr_d2.data.datasets.tbx11k import SOURCE, TBX11K_CLASSES, parse_tbx11k
from tests.helpers import SHARED

REAL = os.path.join(SHARED, "data", "real", "tbx11k")
TXV_JSON = os.path.join(
    SHARED,
    "data",
    "real",
    "torchxrayvision_tests",
    "tests",
    "tbx11k_test_data",
    "annotations",
    "json",
    "TBX11K_train.json",
)


@pytest.fixture(scope="module")
def real_tbx11k(tmp_path_factory):
    """A datasets root whose `tbx11k` folder is a symlink to the real files in ../shared."""
    if not os.path.isdir(os.path.join(REAL, "annotations", "xml")):
        pytest.skip(f"{REAL} (the real TBX11K XML and images) is not here")
    root = tmp_path_factory.mktemp("real_datasets")
    os.symlink(REAL, root / "tbx11k")
    log = ProblemLog("real_tbx11k")
    records = parse_tbx11k(str(root / "tbx11k"), list(TBX11K_CLASSES), log)
    return root, {os.path.basename(r["file_name"]): r for r in records}, log


def _hand_boxes(stem):
    """(class name, XYXY box) of the XML, by the official rule, on the real PNG's size."""
    xml = ET.parse(os.path.join(REAL, "annotations", "xml", stem + ".xml")).getroot()
    scan_w, scan_h = (float(xml.find("size").find(t).text) for t in ("width", "height"))
    with Image.open(os.path.join(REAL, "imgs", "tb", stem + ".png")) as im:
        w, h = im.size
    out = []
    for obj in xml.iter("object"):
        b = obj.find("bndbox")
        x1, y1, x2, y2 = (float(b.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
        # COCO [x1*w/W - 1, y1*h/H - 1, (x2 - x1)*w/W, (y2 - y1)*h/H] read as XYXY
        x, y = x1 * w / scan_w - 1, y1 * h / scan_h - 1
        bw, bh = (x2 - x1) * w / scan_w, (y2 - y1) * h / scan_h
        out.append((obj.find("name").text, [x, y, x + bw, y + bh]))
    return out


def _ours(record):
    return [(TBX11K_CLASSES[a["category_id"]], a["bbox"]) for a in record["annotations"]]


def test_every_real_box_equals_the_hand_computation(real_tbx11k):
    _, records, log = real_tbx11k
    stems = sorted(f[:-4] for f in os.listdir(os.path.join(REAL, "imgs", "tb")))
    assert sorted(n[:-4] for n in records) == stems and len(stems) == 20
    total = 0
    for stem in stems:
        record, hand = records[stem + ".png"], _hand_boxes(stem)
        assert (record["height"], record["width"]) == (512, 512)  # the PNG, not the scan
        ours = _ours(record)
        assert [c for c, _ in ours] == [c for c, _ in hand], stem
        np.testing.assert_allclose(
            [b for _, b in ours], [b for _, b in hand], atol=1e-9, err_msg=stem
        )
        total += len(ours)
    assert total == 38
    assert records["tb1199.png"]["annotations"] == []  # its XML has no <object>
    # Only the 8380 listed films that are not here are reported, each a skipped image.
    assert log.skipped == {"image": 8380} and len(log.problems) == 8380
    assert all("does not exist" in p.message for p in log.problems)


def test_real_boxes_equal_the_official_json(real_tbx11k):
    if not os.path.isfile(TXV_JSON):
        pytest.skip(f"{TXV_JSON} is not here")
    _, records, _ = real_tbx11k
    coco = json.load(open(TXV_JSON))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    compared = 0
    for im in coco["images"]:
        record = records.get(os.path.basename(im["file_name"]))
        if record is None:  # h0001.png: not among the real images here
            continue
        official = [
            (
                names[a["category_id"]],
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ],
            )
            for a in coco["annotations"]
            if a["image_id"] == im["id"]
        ]
        ours = _ours(record)
        assert [c for c, _ in ours] == [c for c, _ in official]
        # the json stores float32
        np.testing.assert_allclose([b for _, b in ours], [b for _, b in official], atol=1e-4)
        compared += len(ours)
    assert compared == 3  # tb0005 (1 box), tb0007 (2 boxes)


def test_real_tbx11k_through_register_source(real_tbx11k):
    root, records, _ = real_tbx11k
    names = register_source(SOURCE, str(root), prefix="real_", replace=True)
    assert "real_tbx11k_official_test" in names
    loaded = DatasetCatalog.get("real_tbx11k_official_test")  # TBX11K_val: 9 of the 20
    assert len(loaded) == 9
    for r in loaded:
        assert r["annotations"] == records[os.path.basename(r["file_name"])]["annotations"]


# ------------------------------------------------------------------------------------------
# Malformed XML: each case is one line naming the xml file, and a counted skip.
# ------------------------------------------------------------------------------------------

_GOOD_OBJECT = (
    "<object><name>ActiveTuberculosis</name><bndbox><xmin>10</xmin><ymin>6</ymin>"
    "<xmax>30</xmax><ymax>20</ymax></bndbox></object>"
)
_SIZE = "<size><width>64</width><height>32</height></size>"


def _xml(size=_SIZE, objects=_GOOD_OBJECT):
    return f"<annotation><filename>tb0001</filename>{size}{objects}</annotation>"


_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a0 "lol">'
    + "".join(f'<!ENTITY a{i} "{("&a%d;" % (i - 1)) * 10}">' for i in range(1, 10))
    + "]><annotation><filename>&a9;</filename></annotation>"
)
_XXE = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _xml(
    objects=_GOOD_OBJECT.replace("ActiveTuberculosis", "&e;")
)

XML_CASES = [
    # (id, xml text, expected message fragment, what is skipped)
    ("not_xml", "this is not XML", "not valid XML", "image"),
    ("empty", "", "not valid XML", "image"),
    ("truncated", _xml()[:-20], "not valid XML", "image"),
    ("entity_bomb", _BOMB, "not valid XML", "image"),
    ("external_entity", _XXE, "not valid XML", "image"),
    ("size_missing", _xml(size=""), "<size>: <width> is missing", "image"),
    (
        "size_zero",
        _xml(size=_SIZE.replace(">64<", ">0<")),
        "<width> '0' is not a positive",
        "image",
    ),
    (
        "size_negative",
        _xml(size=_SIZE.replace(">32<", ">-32<")),
        "<height> '-32' is not a",
        "image",
    ),
    (
        "size_text",
        _xml(size=_SIZE.replace(">64<", ">abc<")),
        "<width> 'abc' is not a number",
        "image",
    ),
    (
        "size_nan",
        _xml(size=_SIZE.replace(">32<", ">nan<")),
        "<height> 'nan' is not a positive",
        "image",
    ),
    (
        "bndbox_missing",
        _xml(objects="<object><name>ActiveTuberculosis</name></object>"),
        "<bndbox> is missing",
        "annotation",
    ),
    (
        "xmin_text",
        _xml(objects=_GOOD_OBJECT.replace(">10<", ">ten<")),
        "<xmin> 'ten' is not a number",
        "annotation",
    ),
    (
        "xmax_missing",
        _xml(objects=_GOOD_OBJECT.replace("<xmax>30</xmax>", "")),
        "<xmax> is missing",
        "annotation",
    ),
    (
        "ymax_inf",
        _xml(objects=_GOOD_OBJECT.replace(">20<", ">inf<")),
        "<ymax> 'inf' is not a finite number",
        "annotation",
    ),
    (
        "unknown_class",
        _xml(objects=_GOOD_OBJECT.replace("ActiveTuberculosis", "Cough")),
        "unknown class name 'Cough'",
        "annotation",
    ),
    ("inverted_box", _xml(objects=_GOOD_OBJECT.replace(">30<", ">5<")), "x2 < x1", "annotation"),
]


def _xml_dataset(root, text):
    """TBX11K without json: two TB films (32x16 PNGs) listed, tb0002.xml well formed."""
    for stem in ("tb0001", "tb0002"):
        path = root / "imgs" / "tb" / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((16, 32), np.uint8)).save(path)
    (root / "annotations" / "xml").mkdir(parents=True)
    (root / "annotations" / "xml" / "tb0001.xml").write_text(text)
    (root / "annotations" / "xml" / "tb0002.xml").write_text(_xml())
    (root / "lists").mkdir()
    (root / "lists" / "TBX11K_train.txt").write_text("tb/tb0001.png\n")
    (root / "lists" / "TBX11K_val.txt").write_text("tb/tb0002.png\n")


def test_good_xml_is_scaled_to_the_image(tmp_path):
    _xml_dataset(tmp_path, _xml())
    log = ProblemLog("xml")
    records = parse_tbx11k(str(tmp_path), list(TBX11K_CLASSES), log)
    assert not log.problems and len(records) == 2
    # scan 64x32 onto the 32x16 image: x * 32/64 - 1, y * 16/32 - 1
    assert records[0]["annotations"][0]["bbox"] == [4.0, 2.0, 14.0, 9.0]
    assert (records[0]["height"], records[0]["width"]) == (16, 32)


@pytest.mark.parametrize(
    "text,fragment,skipped", [c[1:] for c in XML_CASES], ids=[c[0] for c in XML_CASES]
)
def test_malformed_xml_is_one_line_and_a_counted_skip(tmp_path, text, fragment, skipped):
    _xml_dataset(tmp_path, text)
    log = ProblemLog("xml")
    records = parse_tbx11k(str(tmp_path), list(TBX11K_CLASSES), log)
    xml_path = str(tmp_path / "annotations" / "xml" / "tb0001.xml")
    lines = [str(p) for p in log.problems]
    assert len(lines) == 1, lines
    assert lines[0].startswith(xml_path) and fragment in lines[0] and "\n" not in lines[0]
    assert log.skipped == {skipped: 1}
    kept = {os.path.basename(r["file_name"]): len(r["annotations"]) for r in records}
    assert kept == ({"tb0002.png": 1} if skipped == "image" else {"tb0001.png": 0, "tb0002.png": 1})
