"""Longitudinal studies: patients as sequences ordered by study date, lesion identities kept."""
import logging
import re
import os
import shutil

import cv2
import numpy as np
import pydicom
import pytest

from cxr_d2.data.datasets.longitudinal import load_longitudinal
from cxr_d2.data.phantom import PHANTOM_CLASSES
from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.data.phantom.sequences import draw_sequence
from tests.helpers import SHARED

REAL_CR = os.path.join(SHARED, "data", "real", "dicom_cxr", "fo-dicom", "CR-MONO1-10-chest")


def dated_dicom(path, image, date, time=""):
    write_dicom(path, image, patient_id="P1")
    ds = pydicom.dcmread(path)
    ds.StudyDate, ds.StudyTime = date, time
    ds.save_as(path)


def loop_box(mask):
    ys, xs = zip(*[(y, x) for y in range(mask.shape[0]) for x in range(mask.shape[1]) if mask[y, x]])
    return [min(xs), min(ys), max(xs) + 1, max(ys) + 1]


@pytest.fixture
def study_root(tmp_path):
    frames, tracks = draw_sequence(np.random.default_rng([3, 0]), 96, 3)
    p1 = tmp_path / "P1"
    p1.mkdir()
    # file names in another order than the dates: c (2019), a (2020 morning), b (2020 noon)
    names = {"c.dcm": ("20190301", ""), "a.dcm": ("20200101", "0800"), "b": ("20200101", "1200")}
    rows = ["patient_id,study,lesion_id,class,x1,y1,x2,y2,mask,study_date"]
    track = next(tr for tr in tracks if sum(m is not None for m in tr["masks"]) >= 2)
    for t, (name, (date, time)) in enumerate(names.items()):
        dated_dicom(str(p1 / name), frames[t], date, time)
        if track["masks"][t] is not None:
            cv2.imwrite(str(p1 / f"mask_{t}.png"), track["masks"][t].astype(np.uint8) * 255)
            cls = PHANTOM_CLASSES[track["category_id"]]
            rows.append(f"P1,{name},L1,{cls},,,,,mask_{t}.png,")
    p2 = tmp_path / "P2"
    p2.mkdir()
    for name in ("z.png", "y.png"):
        cv2.imwrite(str(p2 / name), frames[0])
    rows += [
        "P2,z.png,n1,Cavitation,10,12,30,40,,20200101",
        "P2,y.png,n1,Cavitation,12,12,33,41,,20210101",
        "P2,y.png,n2,Pleural Effusion,50,60,80,90,,20210101",
        "P2,y.png,n3,Unknown Thing,5,5,9,9,,20210101",
        "P2,missing.png,n1,Cavitation,1,1,5,5,,",
    ]
    (tmp_path / "findings.csv").write_text("\n".join(rows) + "\n")
    return tmp_path, frames, track, names


def test_ordered_by_dicom_date_with_identities(study_root):
    root, frames, track, names = study_root
    p1, p2 = load_longitudinal(str(root), PHANTOM_CLASSES, "longitudinal_test")
    assert [os.path.basename(f) for f in p1["file_names"]] == ["c.dcm", "a.dcm", "b"]
    assert p1["frame_sizes"] == [(96, 96)] * 3 and (p1["height"], p1["width"]) == (96, 96)
    order = list(names)  # the frames were written in this (dict) order: c, a, b
    for t, name in enumerate(os.path.basename(f) for f in p1["file_names"]):
        mask = track["masks"][order.index(name)]
        anns = p1["annotations"][t]
        if mask is None:
            assert anns == []
            continue
        (ann,) = anns
        assert ann["bbox"] == loop_box(mask) and ann["lesion_id"] == "L1"
        assert ann["category_id"] == track["category_id"]
    assert len({a["id"] for f in p1["annotations"] for a in f}) == 1
    # P2: PNGs ordered by the table's study_date; the same lesion id is one track
    assert [os.path.basename(f) for f in p2["file_names"]] == ["z.png", "y.png"]
    ids = [{a["lesion_id"]: a["id"] for a in f} for f in p2["annotations"]]
    assert ids[0]["n1"] == ids[1]["n1"] != ids[1]["n2"]
    assert p2["annotations"][0][0]["bbox"] == [10.0, 12.0, 30.0, 40.0]


def test_problems_named_and_undated_studies_by_name(study_root, caplog):
    root, *_ = study_root
    if not os.path.isfile(REAL_CR):
        pytest.skip("../shared is absent")
    shutil.copy(REAL_CR, root / "P2" / "old")  # real, extension-less, no StudyDate
    with caplog.at_level(logging.WARNING):
        _, p2 = load_longitudinal(str(root), PHANTOM_CLASSES, "longitudinal_test2")
    assert [os.path.basename(f) for f in p2["file_names"]] == ["old", "y.png", "z.png"]
    assert p2["frame_sizes"][0] == (440, 440) and p2["height"] is None
    text = caplog.text
    assert "patient P2: no StudyDate or study_date for old" in text
    assert "unknown class name 'Unknown Thing'" in text
    assert re.search(r"findings.csv:\d+: study missing.png is not a readable image", text)
    assert "patient P1" not in text  # its mask PNGs are not studies
