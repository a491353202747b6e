"""Registration of the built-in phantom datasets and their splits."""
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_d2.data.phantom import PHANTOM_CLASSES

from tests.helpers import TINY, TINY_SIZE


def test_builtin_names_registered_with_metadata():
    names = set(DatasetCatalog.list())
    for split in ("train", "val", "test"):
        assert f"cxr_phantom_{split}" in names and f"cxr_phantom_agnostic_{split}" in names
        meta = MetadataCatalog.get(f"cxr_phantom_{split}")
        assert meta.thing_classes == PHANTOM_CLASSES and meta.evaluator_type == "coco"
        assert MetadataCatalog.get(f"cxr_phantom_agnostic_{split}").thing_classes == ["lesion"]


def test_splits_partition_the_images(tiny_phantom):
    splits = {s: DatasetCatalog.get(f"{TINY}_{s}") for s in ("train", "val", "test")}
    ids = {s: {d["image_id"] for d in dicts} for s, dicts in splits.items()}
    assert sum(len(v) for v in ids.values()) == TINY_SIZE["num_images"]
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    assert [len(ids[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    patients = {s: {d["patient_id"] for d in dicts} for s, dicts in splits.items()}
    assert not (patients["train"] & patients["test"])
    assert DatasetCatalog.get(f"{TINY}_train") == splits["train"]  # deterministic


def test_records_boxes_agree_with_masks(tiny_phantom):
    dicts = DatasetCatalog.get(f"{TINY}_train")
    normal = [d for d in dicts if not d["annotations"]]
    assert len(normal) < len(dicts)
    for d in dicts:
        assert os.path.isfile(d["file_name"])
        for ann in d["annotations"]:
            assert 0 <= ann["category_id"] < len(PHANTOM_CLASSES)
            assert ann["bbox_mode"] == BoxMode.XYWH_ABS
            mask = mask_util.decode(ann["segmentation"])
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


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
