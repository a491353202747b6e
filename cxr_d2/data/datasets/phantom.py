"""
The built-in phantom dataset: `cxr_phantom_{train,val,test}` and `cxr_phantom_agnostic_*`.

Images are drawn by :mod:`cxr_d2.data.phantom` on first use into `$CXR_DATASETS/cxr_phantom`
and read back from there afterwards.
"""
import functools
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..paths import DATASETS_ROOT, require_dir
from ..phantom import PHANTOM_CLASSES, generate_phantom_dataset
from ..splits import SPLITS, split_by_group

__all__ = ["AGNOSTIC_CLASS", "load_phantom", "register_phantom"]

AGNOSTIC_CLASS = "lesion"


def load_phantom(root, split, num_images=600, size=512, seed=0, split_seed=0, agnostic=False):
    """
    Generate the phantom set if needed and return one split as Detectron2 dicts.

    Args:
        root (str): folder of the generated images and `annotations.json`.
        split (str): "train", "val" or "test" (80/10/10 by patient, seeded by `split_seed`).
        num_images, size, seed: what to generate (see `generate_phantom_dataset`).
        agnostic (bool): map every category to 0 (`lesion`).

    Returns:
        list[dict]: records with `file_name`, `height`, `width`, `image_id`, `patient_id` and
        `annotations` (`bbox` in XYWH_ABS, `category_id` contiguous from 0, `segmentation`
        as COCO RLE).
    """
    if os.getenv("CXR_DATASETS"):
        require_dir(os.path.dirname(os.path.abspath(root)), "cxr_phantom")
    json_file = generate_phantom_dataset(root, num_images=num_images, size=size, seed=seed)
    with open(json_file) as f:
        coco = json.load(f)
    assignment = split_by_group([im["patient_id"] for im in coco["images"]], seed=split_seed)
    per_image = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(
            {
                "bbox": ann["bbox"],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 0 if agnostic else ann["category_id"] - 1,
                "segmentation": ann["segmentation"],
                "iscrowd": 0,
            }
        )
    return [
        {
            "file_name": os.path.join(root, im["file_name"]),
            "height": im["height"],
            "width": im["width"],
            "image_id": im["id"],
            "patient_id": im["patient_id"],
            "annotations": per_image.get(im["id"], []),
        }
        for im in coco["images"]
        if assignment[im["patient_id"]] == split
    ]


def register_phantom(prefix="cxr_phantom", root=None, **kwargs):
    """
    Register `<prefix>_{split}` and `<prefix>_agnostic_{split}` lazily, metadata eagerly.

    Args:
        prefix (str): dataset name prefix.
        root (str): generation folder; default `$CXR_DATASETS/cxr_phantom`.
        kwargs: `num_images`, `size`, `seed`, `split_seed` for `load_phantom`.
    """
    root = root or os.path.join(DATASETS_ROOT, "cxr_phantom")
    for split in SPLITS:
        for agnostic in (False, True):
            name = f"{prefix}_agnostic_{split}" if agnostic else f"{prefix}_{split}"
            loader = functools.partial(load_phantom, root, split, agnostic=agnostic, **kwargs)
            DatasetCatalog.register(name, loader)
            MetadataCatalog.get(name).set(
                thing_classes=[AGNOSTIC_CLASS] if agnostic else list(PHANTOM_CLASSES),
                evaluator_type="coco",
                image_root=root,
                split=split,
            )
