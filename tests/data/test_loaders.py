"""
Every real-source loader, end to end on phantoms written in the source's layout by
`tools/make_phantom.py`'s writers; counts checked against the written annotation files.
"""

import collections
import csv
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_d2.data.datasets import SOURCES, register_all_cxr
from cxr_d2.data.phantom.layouts import (
    LAYOUTS,
    plan_from_annotations,
    random_plan,
    write_layout,
)
from cxr_d2.errors import DatasetError
from tests.helpers import REPO_ROOT, SHARED

NIH_CSV = os.path.join(SHARED, "data", "nih", "BBox_List_2017.csv")
SIZE, N = 128, 24
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Every layout written under one $CXR_DATASETS and registered as `t_<source>_*`."""
    if not os.path.isfile(NIH_CSV):
        pytest.skip(f"{NIH_CSV} (the real NIH box list) is not here")
    root = str(tmp_path_factory.mktemp("cxr_datasets"))
    write_layout("nih_cxr14", root, plan_from_annotations("nih_cxr14", NIH_CSV, SIZE), SIZE)
    for layout in LAYOUTS:
        if layout != "nih_cxr14":
            write_layout(layout, root, random_plan(layout, N, SIZE, seed=1), SIZE, seed=1)
    register_all_cxr(root, prefix="t_")
    return root


def _all(name):
    return [r for s in SPLITS for r in DatasetCatalog.get(f"{name}_{s}")]


def _csv_rows(path):
    with open(path, newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _expected_counts(root, source):
    """(images, annotations, normal images) read straight from the written files."""
    src = os.path.join(root, source)
    if source in ("chestx_det10", "chestx_det"):
        names = (
            ("train.json", "test.json")
            if source == "chestx_det10"
            else ("ChestX_Det_train.json", "ChestX_Det_test.json")
        )
        entries = [e for n in names for e in json.load(open(os.path.join(src, n)))]
        return (
            len(entries),
            sum(len(e["syms"]) for e in entries),
            sum(not e["syms"] for e in entries),
        )
    if source in ("tbx11k",):
        lists = [
            line
            for p in ("TBX11K_train", "TBX11K_val")
            for line in open(os.path.join(src, "lists", p + ".txt")).read().split()
        ]
        anns = [
            a
            for p in ("TBX11K_train", "TBX11K_val")
            for a in json.load(open(os.path.join(src, "annotations", "json", p + ".json")))[
                "annotations"
            ]
        ]
        return len(lists), len(anns), sum(not n.startswith("tb/") for n in lists)
    if source == "uml_peru":
        coco = json.load(open(os.path.join(src, "annotations.json")))
        with_anns = {a["image_id"] for a in coco["annotations"]}
        return len(coco["images"]), len(coco["annotations"]), len(coco["images"]) - len(with_anns)
    if source == "vindr_cxr":
        rows = _csv_rows(os.path.join(src, "train.csv"))
        images = {r["image_id"] for r in rows}
        boxes = [r for r in rows if r["class_name"] != "No finding"]
        return len(images), len(boxes), len(images - {r["image_id"] for r in boxes})
    if source == "rsna_pneumonia":
        rows = _csv_rows(os.path.join(src, "stage_2_train_labels.csv"))
        images = {r["patientId"] for r in rows}
        boxes = [r for r in rows if r["Target"] == "1"]
        return len(images), len(boxes), len(images - {r["patientId"] for r in boxes})
    if source == "siim_ptx":
        rows = _csv_rows(os.path.join(src, "train-rle.csv"))
        images = {r["ImageId"] for r in rows}
        masks = [r for r in rows if r["EncodedPixels"] != "-1"]
        return len(images), len(masks), len(images - {r["ImageId"] for r in masks})
    raise KeyError(source)


@pytest.mark.parametrize(
    "source", [s for s, row in SOURCES.items() if not row.generated and s != "nih_cxr14"]
)
def test_counts_match_the_annotation_files(phantoms, source):
    records = _all(f"t_{source}")
    images, annotations, normals = _expected_counts(phantoms, source)
    assert len(records) == images
    assert sum(len(r["annotations"]) for r in records) == annotations
    assert sum(not r["annotations"] for r in records) == normals  # normal films are kept
    assert len({r["image_id"] for r in records}) == images
    classes = MetadataCatalog.get(f"t_{source}_train").thing_classes
    for r in records:
        assert os.path.isfile(r["file_name"])
        for a in r["annotations"]:
            x1, y1, x2, y2 = a["bbox"]
            assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]
            assert 0 <= a["category_id"] < len(classes)
    agnostic = _all(f"t_{source}_agnostic")
    assert [r["file_name"] for r in agnostic] == [r["file_name"] for r in records]
    assert {a["category_id"] for r in agnostic for a in r["annotations"]} <= {0}
    assert MetadataCatalog.get(f"t_{source}_agnostic_val").thing_classes == ["lesion"]


def test_nih_from_the_real_csv(phantoms):
    records = _all("t_nih_cxr14")
    classes = MetadataCatalog.get("t_nih_cxr14_train").thing_classes
    assert len(records) == 880 and sum(len(r["annotations"]) for r in records) == 984
    with open(NIH_CSV, newline="") as f:
        rows = list(csv.reader(f))[1:]
    expected = collections.defaultdict(collections.Counter)
    for row in rows:
        expected[row[0]][row[1]] += 1
    got = {
        os.path.basename(r["file_name"]): collections.Counter(
            classes[a["category_id"]] for a in r["annotations"]
        )
        for r in records
    }
    assert got == dict(expected)
    assert len({r["patient_id"] for r in records}) == 726
    # One box by hand: the first row, scaled from 1024 to 128 px.
    first = next(r for r in records if r["file_name"].endswith(rows[0][0]))
    x, y, w, h = (float(v) * SIZE / 1024 for v in rows[0][2:6])
    assert any(
        np.allclose(a["bbox"], [x, y, x + w, y + h], atol=1e-6) for a in first["annotations"]
    )


def test_no_nih_patient_in_two_splits(phantoms):
    def patients(name):
        return {s: {r["patient_id"] for r in DatasetCatalog.get(f"{name}_{s}")} for s in SPLITS}

    p = patients("t_nih_cxr14")
    assert not (p["train"] & p["val"] or p["train"] & p["test"] or p["val"] & p["test"])
    assert sum(map(len, p.values())) == 726
    assert MetadataCatalog.get("t_nih_cxr14_seed4_train").split_seed == 4
    q = patients("t_nih_cxr14_seed4")
    assert not (q["train"] & q["val"] or q["train"] & q["test"] or q["val"] & q["test"])
    assert q["test"] != p["test"] and sum(map(len, q.values())) == 726


def test_official_split(phantoms):
    test = DatasetCatalog.get("t_chestx_det10_official_test")
    listed = {
        e["file_name"] for e in json.load(open(os.path.join(phantoms, "chestx_det10", "test.json")))
    }
    assert {os.path.basename(r["file_name"]) for r in test} == listed
    assert all("/test_data/" in r["file_name"] for r in test)
    val = DatasetCatalog.get("t_chestx_det10_official_val")
    assert val and all("/train_data/" in r["file_name"] for r in val)
    with pytest.raises(DatasetError, match="no official split.*without '_official'"):
        DatasetCatalog.get("t_vindr_cxr_official_train")  # the Kaggle layout has none


ANNOTATION_FILES = {
    "chestx_det10": "chestx_det10/test.json",
    "tbx11k": "tbx11k/annotations/json/TBX11K_train.json",
    "vindr_cxr": "vindr_cxr/train.csv",
    "rsna_pneumonia": "rsna_pneumonia/stage_2_train_labels.csv",
    "siim_ptx": "siim_ptx/train-rle.csv",
}


@pytest.mark.parametrize("layout", sorted(ANNOTATION_FILES))
def test_make_phantom_from_annotation_files(phantoms, layout, tmp_path):
    """A layout re-drawn from its own annotation file has the file's findings."""
    path = os.path.join(phantoms, ANNOTATION_FILES[layout])
    plan = plan_from_annotations(layout, path, SIZE, native_size=SIZE)
    first = random_plan(layout, N, SIZE, seed=1)
    if layout == "tbx11k":
        expected = len(json.load(open(path))["annotations"])
    elif layout == "chestx_det10":
        expected = sum(len(i.findings) for i in first if i.part == "test")
    elif layout == "vindr_cxr":
        expected = 3 * sum(len(i.findings) for i in first)  # every reader's row
    else:
        expected = sum(len(i.findings) for i in first)
    assert sum(len(i.findings) for i in plan) == expected
    write_layout(layout, str(tmp_path), plan, SIZE)
    register_all_cxr(str(tmp_path), prefix=f"re_{layout}_", sources=[layout])
    records = _all(f"re_{layout}_{layout}")
    assert sum(len(r["annotations"]) for r in records) == expected


def test_vindr_readers_and_fusion(phantoms):
    rows = _csv_rows(os.path.join(phantoms, "vindr_cxr", "train.csv"))
    boxes = [r for r in rows if r["class_name"] != "No finding"]
    every = _all("t_vindr_cxr")
    assert {a["rad_id"] for r in every for a in r["annotations"]} == {"R8", "R9", "R10"}
    fused = _all("t_vindr_cxr_wbf")
    # the three readers' boxes of each lesion (jittered by <= 1% of the side) fuse into one
    assert sum(len(r["annotations"]) for r in fused) == len(boxes) // 3
    assert all(a["num_readers"] == 3 for r in fused for a in r["annotations"])
    assert sum(len(r["annotations"]) for r in _all("t_vindr_cxr_r9")) == sum(
        r["rad_id"] == "R9" for r in boxes
    )
    # PhysioNet's 22 labels: the same boxes (every Kaggle class is one of them)
    physionet = _all("t_vindr_cxr_physionet")
    assert len(MetadataCatalog.get("t_vindr_cxr_physionet_train").thing_classes) == 22
    assert sum(len(r["annotations"]) for r in physionet) == len(boxes)


def test_siim_rows_are_separate_instances(phantoms):
    rows = _csv_rows(os.path.join(phantoms, "siim_ptx", "train-rle.csv"))
    per_image = collections.Counter(r["ImageId"] for r in rows if r["EncodedPixels"] != "-1")
    image_id, count = per_image.most_common(1)[0]
    assert count >= 2
    record = next(r for r in _all("t_siim_ptx") if image_id in r["file_name"])
    assert len(record["annotations"]) == count
    for ann in record["annotations"]:
        mask = mask_util.decode(ann["segmentation"])
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_uml_mask_pngs_with_disconnected_regions(tmp_path):
    plan = random_plan("uml_peru", 6, SIZE, seed=2)
    write_layout("uml_peru", str(tmp_path), plan, SIZE, seed=2, uml_masks="png")
    import cv2

    stem = os.path.splitext(plan[0].name)[0]
    two = np.zeros((SIZE, SIZE), np.uint8)
    two[10:20, 10:20] = 255
    two[60:70, 90:100] = 255
    cv2.imwrite(str(tmp_path / "uml_peru" / "masks" / stem / "Cavitation_9.png"), two)
    register_all_cxr(str(tmp_path), prefix="png_", sources=["uml_peru"])
    records = _all("png_uml_peru")
    assert sum(len(r["annotations"]) for r in records) == sum(len(i.findings) for i in plan) + 1
    record = next(r for r in records if os.path.basename(r["file_name"]).startswith(stem))
    boxes = [a["bbox"] for a in record["annotations"]]
    assert [10.0, 10.0, 100.0, 70.0] in boxes  # two regions, one instance, one box


def test_a_few_training_iterations_on_dicom_masks(phantoms, tmp_path):
    """Mask R-CNN for 3 iterations on the SIIM layout: DICOM pixels, run-length masks."""
    from detectron2.config import get_cfg

    from cxr_d2.config import add_cxr_config

    from tests.helpers import train

    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(
        os.path.join(REPO_ROOT, "configs", "Phantom", "mask_rcnn_R_18_FPN_cpu.yaml")
    )
    cfg.merge_from_list(
        [
            "DATASETS.TRAIN",
            "('t_siim_ptx_train',)",
            "DATASETS.TEST",
            "('t_siim_ptx_test',)",
            "INPUT.MIN_SIZE_TRAIN",
            "(128,)",
            "INPUT.MAX_SIZE_TRAIN",
            "128",
            "INPUT.MIN_SIZE_TEST",
            "128",
            "INPUT.MAX_SIZE_TEST",
            "128",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "SOLVER.MAX_ITER",
            "3",
            "SOLVER.WARMUP_ITERS",
            "2",
            "SOLVER.STEPS",
            "()",
            "SOLVER.CHECKPOINT_PERIOD",
            "1000",
            "DATALOADER.NUM_WORKERS",
            "0",
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS",
            "False",
            "TEST.EVAL_PERIOD",
            "0",
            "OUTPUT_DIR",
            str(tmp_path),
        ]
    )
    trainer, losses = train(cfg)
    assert "loss_mask" in losses and all(np.isfinite(v) for v in losses.values()), losses
    manifest = json.load(open(tmp_path / "split_manifest.json"))
    assert len(manifest["t_siim_ptx_train"]) == len(DatasetCatalog.get("t_siim_ptx_train"))
    assert all(f.endswith(".dcm") for f in manifest["t_siim_ptx_train"])


def test_draw_normal_phantom_is_the_film_without_its_lesions():
    from cxr_d2.data.phantom import draw_normal_phantom, draw_phantom

    for seed in range(3):
        image, instances = draw_phantom(np.random.default_rng(seed), 96)
        normal = draw_normal_phantom(np.random.default_rng(seed), 96)
        lesions = np.zeros(image.shape, bool)
        for inst in instances:
            lesions |= inst["mask"]
        assert np.array_equal(image[~lesions], normal[~lesions])


def test_nih_official_folders_and_split(tmp_path):
    plan = random_plan("nih_cxr14", 12, SIZE, seed=4)
    root = write_layout("nih_cxr14", str(tmp_path), plan, SIZE)
    names = sorted(os.listdir(os.path.join(root, "images")))
    for k, name in enumerate(names):  # as extracted from images_001.tar.gz, images_002.tar.gz
        folder = os.path.join(root, f"images_{1 + k % 2:03d}", "images")
        os.makedirs(folder, exist_ok=True)
        os.rename(os.path.join(root, "images", name), os.path.join(folder, name))
    test_names = [n for n in names if n.startswith("00000004_")]
    with open(os.path.join(root, "test_list.txt"), "w") as f:
        f.write("\n".join(test_names) + "\n")
    with open(os.path.join(root, "train_val_list.txt"), "w") as f:
        f.write("\n".join(n for n in names if n not in test_names) + "\n")
    register_all_cxr(str(tmp_path), prefix="nihoff_", sources=["nih_cxr14"])
    test = DatasetCatalog.get("nihoff_nih_cxr14_official_test")
    assert sorted(os.path.basename(r["file_name"]) for r in test) == test_names
    assert len(_all("nihoff_nih_cxr14_official")) == 12
    assert sum(len(r["annotations"]) for r in _all("nihoff_nih_cxr14_official")) == sum(
        len(i.findings) for i in plan
    )


def test_tbx11k_voc_xml_without_the_json(phantoms, tmp_path):
    import shutil

    shutil.copytree(os.path.join(phantoms, "tbx11k"), tmp_path / "tbx11k")
    shutil.rmtree(tmp_path / "tbx11k" / "annotations" / "json")
    register_all_cxr(str(tmp_path), prefix="xml_", sources=["tbx11k"])
    from_json, from_xml = _all("t_tbx11k"), _all("xml_tbx11k")

    def boxes(records):  # (imgs/<folder>/<name>, box, class) of every annotation and image
        key = [r["file_name"].split(os.sep)[-2:] for r in records]
        anns = [
            (k, tuple(a["bbox"]), a["category_id"])
            for k, r in zip(key, records)
            for a in r["annotations"]
        ]
        return sorted(map(tuple, key)), sorted(anns)

    assert boxes(from_json) == boxes(from_xml)


def test_missing_source_folder_is_an_error_only_when_used(tmp_path):
    register_all_cxr(str(tmp_path / "nowhere"), prefix="missing_")  # registering reads nothing
    with pytest.raises(
        DatasetError, match=r"nowhere/rsna_pneumonia does not exist.*\$CXR_DATASETS"
    ):
        DatasetCatalog.get("missing_rsna_pneumonia_train")
    os.makedirs(tmp_path / "nowhere" / "nih_cxr14")
    with pytest.raises(DatasetError, match=r"BBox_List_2017\.csv does not exist"):
        DatasetCatalog.get("missing_nih_cxr14_val")
