"""
The built-in phantom source: `cxr_phantom_{train,val,test}` (600 films of 512 px) and
`cxr_phantom_tiny_{train,val,test}` (40 films of 128 px, for tests and quick trials).

Images are drawn by :mod:`cxr_d2.data.phantom` on first use into `$CXR_DATASETS/cxr_phantom`
(`$CXR_DATASETS/cxr_phantom_tiny`) and read back from there afterwards. The patient id of
each film is its own, so the default split is the seeded 80/10/10 over the films.
"""
import json
import os

from ..paths import require_dir
from ..phantom import PHANTOM_CLASSES, generate_phantom_dataset
from .common import Source, Variant, box_annotation, category_index

__all__ = ["SOURCE", "PHANTOM_CLASSES", "PHANTOM_VARIANTS", "parse_phantom"]

# Each size its own folder, so that using one never redraws another's cache.
PHANTOM_VARIANTS = (
    Variant("", {"num_images": 600, "size": 512}),
    Variant("tiny", {"num_images": 40, "size": 128}, folder="cxr_phantom_tiny"),
)


def parse_phantom(root, classes, log, num_images=600, size=512, seed=0):
    """
    Generate the phantom set into `root` if needed and return every film as a record.

    Args:
        root (str): folder of the generated images and `annotations.json`.
        classes (list[str]): must be :data:`PHANTOM_CLASSES`.
        log (ProblemLog): where problems go.
        num_images, size, seed: what to generate (see `generate_phantom_dataset`).

    Returns:
        list[dict]: records with `file_name`, `height`, `width`, `patient_id` and
        `annotations` (`bbox` in XYXY_ABS, `category_id` into `classes`, `segmentation` as
        COCO RLE), in the order of the generated files.
    """
    if os.getenv("CXR_DATASETS"):
        require_dir(os.path.dirname(os.path.abspath(root)), os.path.basename(root))
    json_file = generate_phantom_dataset(root, num_images=num_images, size=size, seed=seed)
    with open(json_file) as f:
        coco = json.load(f)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    per_image = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        where = f"{json_file} annotation {ann['id']}"
        box = box_annotation(
            log,
            where,
            [x, y, x + w, y + h],
            category_index(log, where, names.get(ann["category_id"]), classes),
            size,
            size,
            segmentation=ann["segmentation"],
        )
        if box:
            per_image.setdefault(ann["image_id"], []).append(box)
    return [
        {
            "file_name": os.path.join(root, im["file_name"]),
            "height": im["height"],
            "width": im["width"],
            "patient_id": im["patient_id"],
            "annotations": per_image.get(im["id"], []),
        }
        for im in coco["images"]
    ]


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "cxr_phantom",
    parse_phantom,
    tuple(PHANTOM_CLASSES),
    generated=True,
    variants=PHANTOM_VARIANTS,
)
