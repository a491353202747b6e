"""Reading a COCO-format annotation file as the sources publish it (TBX11K, UML/Perú)."""

import json

from ...errors import DatasetError
from .common import category_index

__all__ = ["read_coco_images", "iter_coco_annotations"]


def read_coco_images(path, log, image_path, extra=None):
    """
    The file's JSON and its images as records without annotations.

    Args:
        path (str): the COCO json.
        log (ProblemLog): an image listed twice (same id or same file) is reported, skipped.
        image_path (callable): `file_name` in the json -> the image's path.
        extra (callable or None): (image dict, path) -> more fields of the record.

    Returns:
        coco (dict), by_id (dict image id -> record with file_name, height, width,
        annotations [] and `where`, the place to name in reports).
    """
    try:
        with open(path) as f:
            coco = json.load(f)
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    by_id, files = {}, set()
    for im in coco.get("images", []):
        where = f"{path} image id {im.get('id')}"
        file_name = image_path(str(im.get("file_name", "")))
        if im.get("id") in by_id or file_name in files:
            log.report(where, f"image {im.get('file_name')} listed twice", "image")
            continue
        files.add(file_name)
        by_id[im.get("id")] = {
            "file_name": file_name,
            "height": im.get("height"),
            "width": im.get("width"),
            **(extra(im, file_name) if extra else {}),
            "annotations": [],
            "where": where,
        }
    return coco, by_id


def iter_coco_annotations(coco, path, log, by_id, classes):
    """
    Yields (record, category index into `classes`, annotation dict, where) for each
    annotation whose image and category are known; the others are reported and skipped.
    """
    names = {c["id"]: c["name"] for c in coco.get("categories", [])}
    for ann in coco.get("annotations", []):
        where = f"{path} annotation id {ann.get('id')}"
        record = by_id.get(ann.get("image_id"))
        if record is None:
            log.report(
                where, f"image id {ann.get('image_id')} is not in the images list", "annotation"
            )
            continue
        name = names.get(ann.get("category_id"), f"id {ann.get('category_id')}")
        category = category_index(log, where, name, classes)
        if category is not None:
            yield record, category, ann, where
