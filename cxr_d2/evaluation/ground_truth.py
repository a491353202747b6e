"""
Checks of a COCO ground truth (a dataset's `json_file`, or the COCO json Detectron2 converts
a dataset to) before pycocotools indexes and scores it: the first problem is a DatasetError
naming the file, the entry (`images[k]`, `annotations[k]`) and the key.

What is checked is what COCO and COCOeval read: `images` with unique `id`, positive integer
`height` and `width`; `categories` with unique `id` and a `name`; `annotations` (optional: a
test set without them is not scored) with unique `id`, known `image_id` and `category_id`,
a COCO `bbox`, `area` >= 0, `iscrowd` 0 or 1 and, where present, a `segmentation` of the
image's size.
"""

import json

from ..errors import DatasetError
from .regions import box_problem, is_finite_number, segmentation_problem

__all__ = ["load_ground_truth", "check_ground_truth", "image_sizes"]


def load_ground_truth(path):
    """Read a COCO json file; DatasetError names it when it is not JSON text."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"ground truth {path} is not UTF-8 text ({e.reason} at byte {e.start}); give the "
            "dataset's COCO json"
        ) from None
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"ground truth {path} cannot be read as JSON ({e}); fix or replace it"
        ) from None


def _is_id(v):
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _is_size(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _entries(dataset, key, where, required=True):
    """`dataset[key]` as a list of dicts, else DatasetError."""
    if key not in dataset:
        if required:
            raise DatasetError(f"{where} has no '{key}' list; give a COCO instances json")
        return []
    entries = dataset[key]
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: '{key}' is a {type(entries).__name__}, not a list")
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DatasetError(f"{where}: {key}[{k}] is a {type(e).__name__}, not an object")
    return entries


def _unique_ids(entries, key, where, valid):
    ids = set()
    for k, e in enumerate(entries):
        i = e.get("id")
        if not valid(i):
            raise DatasetError(f"{where}: {key}[{k}] has 'id' {i!r}; give a unique integer id")
        if i in ids:
            raise DatasetError(f"{where}: {key}[{k}] repeats 'id' {i!r}; ids must be unique")
        ids.add(i)
    return ids


def image_sizes(dataset):
    """image id -> (height, width) of a checked COCO dict."""
    return {im["id"]: (im["height"], im["width"]) for im in dataset["images"]}


def _check_images(images, where):
    _unique_ids(images, "images", where, _is_id)
    for k, im in enumerate(images):
        for key in ("height", "width"):
            if not _is_size(im.get(key)):
                raise DatasetError(
                    f"{where}: images[{k}] (id {im['id']}) has '{key}' {im.get(key)!r}; give "
                    "the image's size in pixels, a positive integer"
                )


def _check_categories(categories, where):
    ids = _unique_ids(categories, "categories", where, _is_id)
    for k, c in enumerate(categories):
        if not isinstance(c.get("name"), str):
            raise DatasetError(f"{where}: categories[{k}] (id {c['id']}) has no 'name'")
    return ids


def _annotation_problem(a, sizes, category_ids):
    """(key, problem) of one annotation, or None."""
    if not _is_id(a.get("image_id")) or a["image_id"] not in sizes:
        return "image_id", f"{a.get('image_id')!r} is not an image of 'images'"
    if not _is_id(a.get("category_id")) or a["category_id"] not in category_ids:
        return "category_id", f"{a.get('category_id')!r} is not a category of 'categories'"
    problem = box_problem(a.get("bbox"))
    if problem:
        return "bbox", f"{a.get('bbox')!r} {problem}; give [x, y, width, height] in pixels"
    area = a.get("area")
    if not (is_finite_number(area) and area >= 0):
        return "area", f"{area!r} is not a number >= 0 (COCOeval's size ranges need it)"
    if a.get("iscrowd", 0) not in (0, 1) or not isinstance(a.get("iscrowd", 0), int):
        return "iscrowd", f"{a.get('iscrowd')!r} is not 0 or 1"
    if "segmentation" in a:
        problem = segmentation_problem(a["segmentation"], *sizes[a["image_id"]])
        if problem:
            return "segmentation", problem
    return None


def check_ground_truth(dataset, where):
    """
    Raise DatasetError at the first entry of a COCO dict that pycocotools cannot score.

    Args:
        dataset: the parsed json (any JSON value).
        where (str): what it is ("ground truth <file>"), for the message.
    """
    if not isinstance(dataset, dict):
        raise DatasetError(
            f"{where} is a JSON {type(dataset).__name__}, not a COCO object "
            "{images, annotations, categories}"
        )
    images = _entries(dataset, "images", where)
    _check_images(images, where)
    category_ids = _check_categories(_entries(dataset, "categories", where), where)
    sizes = image_sizes(dataset)
    annotations = _entries(dataset, "annotations", where, required=False)
    _unique_ids(annotations, "annotations", where, _is_id)
    for k, a in enumerate(annotations):
        problem = _annotation_problem(a, sizes, category_ids)
        if problem:
            key, text = problem
            raise DatasetError(f"{where}: annotations[{k}] (id {a['id']}) '{key}' {text}")
