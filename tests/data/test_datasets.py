"""Registration of the built-in datasets: names, metadata, the phantom's splits, one parse."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_d2.config import add_cxr_config
from cxr_d2.data.datasets import SOURCES, parse_phantom, register_source
from cxr_d2.data.datasets.uml_peru import UML_PAPER_CLASSES
from cxr_d2.data.datasets.vindr_cxr import VINDR_KAGGLE_CLASSES
from cxr_d2.data.phantom import PHANTOM_CLASSES
from cxr_d2.evaluation.naming import dataset_label, is_agnostic_dataset
from tests.helpers import REPO_ROOT, TINY, TINY_SIZE, train


def test_builtin_names_registered_with_metadata():
    names = set(DatasetCatalog.list())
    for split in ("train", "val", "test"):
        assert f"cxr_phantom_{split}" in names and f"cxr_phantom_agnostic_{split}" in names
        meta = MetadataCatalog.get(f"cxr_phantom_{split}")
        assert meta.thing_classes == PHANTOM_CLASSES and meta.evaluator_type == "coco"
        assert MetadataCatalog.get(f"cxr_phantom_agnostic_{split}").thing_classes == ["lesion"]
    for name in ("tbx11k_official_train", "nih_cxr14_seed1_val", "vindr_cxr_wbf_agnostic_test",
                 "vindr_cxr_r9_seed2_train", "cxr_phantom_tiny_seed4_test"):
        assert name in names, name
    assert "rsna_pneumonia_official_train" not in names  # RSNA publishes no split
    meta = MetadataCatalog.get("nih_cxr14_seed1_val")
    assert (meta.split_mode, meta.split_seed, meta.split) == ("random", 1, "val")
    assert MetadataCatalog.get("tbx11k_official_test").split_mode == "official"
    assert len(MetadataCatalog.get("vindr_cxr_physionet_train").thing_classes) == 22


def test_agnostic_is_metadata_not_a_name():
    agnostic = f"{TINY}_agnostic_test"
    assert is_agnostic_dataset(agnostic) and dataset_label(agnostic) == f"{TINY}_test"
    assert not is_agnostic_dataset(f"{TINY}_test") and dataset_label(f"{TINY}_test") == f"{TINY}_test"
    name = "my_agnostic_set_train"  # a user's dataset whose name merely contains the word
    DatasetCatalog.register(name, list)
    MetadataCatalog.get(name).set(thing_classes=["a", "b"])
    try:
        assert not is_agnostic_dataset(name) and dataset_label(name) == name
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_splits_partition_the_images(tiny_phantom):
    splits = {s: DatasetCatalog.get(f"{TINY}_{s}") for s in ("train", "val", "test")}
    ids = {s: {d["image_id"] for d in dicts} for s, dicts in splits.items()}
    assert sum(len(v) for v in ids.values()) == TINY_SIZE["num_images"]
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert [len(ids[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    patients = {s: {d["patient_id"] for d in dicts} for s, dicts in splits.items()}
    assert not (patients["train"] & patients["test"])
    assert DatasetCatalog.get(f"{TINY}_train") == splits["train"]  # deterministic
    other = {d["image_id"] for d in DatasetCatalog.get(f"{TINY}_seed1_test")}
    assert len(other) == 4 and other != ids["test"]


def test_records_boxes_agree_with_masks(tiny_phantom):
    dicts = DatasetCatalog.get(f"{TINY}_train")
    normal = [d for d in dicts if not d["annotations"]]
    assert len(normal) < len(dicts)
    for d in dicts:
        assert os.path.isfile(d["file_name"])
        for ann in d["annotations"]:
            assert 0 <= ann["category_id"] < len(PHANTOM_CLASSES)
            assert ann["bbox_mode"] == BoxMode.XYXY_ABS  # as every other source
            mask = mask_util.decode(ann["segmentation"])
            ys, xs = np.nonzero(mask)
            assert tuple(ann["bbox"]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_agnostic_variant_merges_categories(tiny_phantom):
    specific = DatasetCatalog.get(f"{TINY}_train")
    agnostic = DatasetCatalog.get(f"{TINY}_agnostic_train")
    assert [d["image_id"] for d in specific] == [d["image_id"] for d in agnostic]
    cats = {a["category_id"] for d in agnostic for a in d["annotations"]}
    assert cats == {0}
    assert len({a["category_id"] for d in specific for a in d["annotations"]}) > 1


def test_missing_datasets_root_is_one_line(tmp_path):
    env = dict(os.environ, CXR_DATASETS=str(tmp_path / "no_such_folder"))
    code = "import cxr_d2; from detectron2.data import DatasetCatalog; DatasetCatalog.get('cxr_phantom_train')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "no_such_folder does not exist" in last and "$CXR_DATASETS" in last


_IMPORT_AND_LIST = """
import json, os, sys
root = os.path.abspath(os.environ["CXR_DATASETS"])
touched = []
def audit(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str):
        if (os.path.abspath(args[0]) + os.sep).startswith(root + os.sep):
            touched.append(args[0])
sys.addaudithook(audit)
import cxr_d2
from detectron2.data import MetadataCatalog
classes = {n: MetadataCatalog.get(n).thing_classes for n in ("uml_peru_train", "vindr_cxr_train")}
print(json.dumps({"touched": touched, "classes": classes}))
"""


def test_import_reads_no_dataset_file(tmp_path):
    """Classes come from the source table, whatever lies under $CXR_DATASETS."""
    uml = tmp_path / "uml_peru"
    (uml / "masks" / "p1").mkdir(parents=True)
    (uml / "masks" / "p1" / "Miliary_1.png").write_bytes(b"")  # a class the table lacks
    os.mkfifo(uml / "annotations.json")  # reading it would block
    vindr = tmp_path / "vindr_cxr" / "annotations"
    vindr.mkdir(parents=True)
    (vindr / "annotations_train.csv").write_text("image_id,rad_id\n")  # the PhysioNet layout
    env = dict(os.environ, CXR_DATASETS=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-c", _IMPORT_AND_LIST],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["touched"] == []
    assert out["classes"] == {"uml_peru_train": UML_PAPER_CLASSES, "vindr_cxr_train": VINDR_KAGGLE_CLASSES}


def _files(root):
    return {
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
        for d, _, files in os.walk(root)
        for f in files
    }


def test_a_run_parses_each_source_once_and_writes_only_to_output_dir(tiny_phantom, tmp_path):
    root = tiny_phantom["CXR_DATASETS"]
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return parse_phantom(*args, **kwargs)

    phantom = SOURCES["cxr_phantom"]
    tiny = tuple(v for v in phantom.variants if v.name == "tiny")
    row = dataclasses.replace(phantom, parse=counted, variants=tiny)
    register_source(row, root, prefix="counted_")
    DatasetCatalog.get(f"{TINY}_train")  # the phantom cache exists before the run
    before = _files(root)
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO_ROOT, "configs", "Phantom", "retinanet_R_18_FPN_cpu.yaml"))
    cfg.merge_from_list([
        "DATASETS.TRAIN", f"('counted_{TINY}_train',)",
        "DATASETS.TEST", f"('counted_{TINY}_test',)",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
        "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
        "CXR.EVAL.FROC.ENABLED", "False", "OUTPUT_DIR", str(tmp_path),
    ])
    trainer, losses = train(cfg)  # DefaultTrainer evaluates DATASETS.TEST at the end
    assert losses
    assert os.path.isfile(tmp_path / "inference" / f"counted_{TINY}_test" / "evaluation.json")
    assert len(calls) == 1  # train loader, manifest, test loader and evaluator share one parse
    assert _files(root) == before  # nothing written beside the phantom cache
    manifest = json.loads((tmp_path / "split_manifest.json").read_text())
    assert sorted(manifest) == [f"counted_{TINY}_test", f"counted_{TINY}_train"]
    assert len(manifest[f"counted_{TINY}_train"]) == 32
    metrics = json.loads(
        (tmp_path / "inference" / f"counted_{TINY}_test" / "evaluation.json").read_text()
    )
    assert metrics["split_manifest"] == str(tmp_path / "split_manifest.json")
    assert len(manifest[f"counted_{TINY}_test"]) == metrics["num_images"] == 4
