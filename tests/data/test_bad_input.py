"""
Broken copies of phantom datasets: every planted fault is reported once, naming its file
(and row or annotation id), and nothing else is lost; check_dataset.py exits non-zero.
"""

import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from cxr_d2.data.checks import check_dataset, collect_problems
from cxr_d2.data.datasets import register_all_cxr
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.data.masks import mask_to_rle
from cxr_d2.data.phantom.layouts import random_plan, write_layout
from cxr_d2.errors import DatasetError
from tests.helpers import REPO_ROOT

SIZE = 128
SPLITS = ("train", "val", "test")


def _all(name):
    return [r for s in SPLITS for r in DatasetCatalog.get(f"{name}_{s}")]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    plans = {}
    for layout in ("nih_cxr14", "chestx_det10", "tbx11k", "uml_peru", "siim_ptx"):
        plans[layout] = random_plan(layout, 9, SIZE, seed=3)
        write_layout(layout, str(root), plans[layout], SIZE, seed=3)
    faults = {}

    # NIH: bad CSV rows, appended after the good ones (row numbers 2 + number of good rows).
    nih = root / "nih_cxr14"
    csv_path = nih / "BBox_List_2017.csv"
    good_rows = list(csv.reader(open(csv_path)))[1:]
    first = plans["nih_cxr14"][0].name
    bad_rows = [
        ([first, "Mass", "10", "", "20", "20"], "missing value in column 'y'"),
        ([first, "Mass", "abc", "10", "20", "20"], "non-numeric value 'abc' in column 'x'"),
        ([first, "Mass", "50", "10", "-20", "20"], "x2 < x1"),
        ([first, "Mass", "500", "500", "20", "20"], "wholly outside"),
        ([first, "Hernia", "10", "10", "20", "20"], "unknown class name 'Hernia'"),
        (good_rows[0], "listed twice"),
        (["99999999_000.png", "Mass", "10", "10", "20", "20"], "99999999_000.png does not exist"),
    ]
    with open(csv_path, "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(row for row, _ in bad_rows)
    faults["nih_cxr14"] = [
        (f"{csv_path}:{len(good_rows) + 2 + k}", msg) for k, (_, msg) in enumerate(bad_rows)
    ]
    # NIH images: a truncated PNG and a text file named .png
    truncated = nih / "images" / plans["nih_cxr14"][1].name
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    not_image = nih / "images" / plans["nih_cxr14"][2].name
    not_image.write_text("this is not a PNG")
    faults["nih_cxr14"] += [
        (str(truncated), "not a readable image (OSError: image file is truncated)"),
        (str(not_image), "not a readable image (UnidentifiedImageError"),
    ]

    # ChestX-Det10: an image listed twice.
    det = root / "chestx_det10" / "train.json"
    entries = json.load(open(det))
    entries.append(dict(entries[0]))
    json.dump(entries, open(det, "w"))
    where = f"{det}[{len(entries) - 1}] ({entries[0]['file_name']})"
    faults["chestx_det10"] = [(where, "image listed twice")]

    # TBX11K: an annotation of an image that does not exist; an image of the wrong size.
    tbx = root / "tbx11k" / "annotations" / "json" / "TBX11K_train.json"
    coco = json.load(open(tbx))
    coco["annotations"].append(dict(coco["annotations"][0], id=999, image_id=12345))
    json.dump(coco, open(tbx, "w"))
    resized = root / "tbx11k" / "imgs" / "tb" / coco["images"][0]["file_name"]
    cv2.imwrite(str(resized), np.zeros((100, 90), np.uint8))
    faults["tbx11k"] = [
        (f"{tbx} annotation id 999", "image id 12345 is not in the images list"),
        (str(resized), "image is 90x100 but the annotation says 128x128"),
    ]

    # UML/Peru: an empty mask.
    uml = root / "uml_peru" / "annotations.json"
    coco = json.load(open(uml))
    coco["annotations"].append(
        dict(coco["annotations"][0], id=777, segmentation=mask_to_rle(np.zeros((SIZE, SIZE))))
    )
    json.dump(coco, open(uml, "w"))
    faults["uml_peru"] = [(f"{uml} annotation id 777", "mask is empty")]

    # SIIM: a truncated DICOM.
    siim = [
        os.path.join(d, f)
        for d, _, fs in os.walk(root / "siim_ptx")
        for f in fs
        if f.endswith(".dcm")
    ]
    data = open(siim[0], "rb").read()
    open(siim[0], "wb").write(data[: len(data) - 3000])
    faults["siim_ptx"] = [(siim[0], "cannot decode pixel data")]

    register_all_cxr(str(root), prefix="bad_")
    return root, plans, faults


@pytest.mark.parametrize("source", ["nih_cxr14", "chestx_det10", "tbx11k", "uml_peru", "siim_ptx"])
def test_every_fault_reported_and_nothing_else_lost(broken, source):
    root, plans, faults = broken
    problems = []
    for split in SPLITS:
        summary, found = check_dataset(f"bad_{source}_{split}", progress=False)
        problems += [str(p) for p in found if str(p) not in problems]
    for where, message in faults[source]:
        hits = [p for p in problems if where + ":" in p and message in p]
        assert len(hits) == 1, (where, message, problems)
    assert all("\n" not in p for p in problems)
    records = _all(f"bad_{source}")
    planned = sum(len(i.findings) for i in plans[source])
    kept = sum(len(r["annotations"]) for r in records)
    if source == "nih_cxr14":  # the text file named .png: its image and boxes cannot be used
        planned -= len(plans[source][2].findings)
        assert len(records) == 8
    else:
        assert len(records) == 9
    assert kept == planned


def test_loader_counts_what_it_skips(broken, caplog):
    _, plans, _ = broken
    with collect_problems() as problems:
        DatasetCatalog.get("bad_nih_cxr14_train")
    assert len(problems) == 8  # 7 bad rows and the text file (the truncated PNG: at decoding)
    skipped = 7 + len(plans["nih_cxr14"][2].findings)  # + every row of the unreadable image
    assert f"8 problem(s) reported above, skipped {skipped} annotation(s)" in caplog.text


def test_check_dataset_tool_exit_status(broken):
    root, _, faults = broken
    tool = os.path.join(REPO_ROOT, "tools", "check_dataset.py")
    env = dict(os.environ, CXR_DATASETS=str(root))
    r = subprocess.run(
        [sys.executable, tool, "tbx11k_train", "tbx11k_val", "tbx11k_test"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-2000:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("problem: ")]
    for where, message in faults["tbx11k"]:
        assert any(where in line and message in line for line in lines), r.stdout
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, tool, "no_such_dataset"], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith(
        "error: 'no_such_dataset'"
    )


def test_mapper_skips_unreadable_images_in_training_only(broken, tmp_path):
    root, plans, _ = broken
    record = {
        "file_name": str(root / "nih_cxr14" / "images" / plans["nih_cxr14"][1].name),
        "height": SIZE,
        "width": SIZE,
        "image_id": 0,
        "annotations": [],
    }
    kwargs = dict(augmentations=[], image_format="BGR")
    train = CXRDatasetMapper(is_train=True, **kwargs)
    assert train(record) is None and train.skipped == 1
    with pytest.raises(DatasetError, match="not a readable image"):
        CXRDatasetMapper(is_train=False, **kwargs)(record)
    good = dict(record, file_name=str(root / "nih_cxr14" / "images" / plans["nih_cxr14"][0].name))
    assert CXRDatasetMapper(is_train=False, **kwargs)(good)["image"].shape == (3, SIZE, SIZE)
