"""
Reading the JSON annotation files the sources publish: COCO (TBX11K, UML/Perú) and the
ChestX-Det lists, checking the shape of every value before it is used.

A file that cannot be used at all (not readable, not UTF-8, not JSON, a root of the wrong
type) raises DatasetError naming it. A value of the wrong shape is one line naming the file
and its JSON path (`annotations.json: images[3].file_name: expected a string, got 17`), and
the image or annotation holding it is skipped and counted.
"""

import json
import math

from ...errors import DatasetError
from ..policy import data_policy
from .common import category_index

__all__ = [
    "MISSING",
    "ShapeError",
    "read_json",
    "expect",
    "expect_numbers",
    "expect_size",
    "read_coco_images",
    "iter_coco_annotations",
]

MISSING = object()  # a key absent from its JSON object


class ShapeError(ValueError):
    """A JSON value of the wrong shape; the message starts with its JSON path."""


def read_json(path, root_type):
    """
    The parsed JSON of `path`, whose root must be a `root_type` (list or dict).

    Raises DatasetError naming `path` when it cannot be read, is not UTF-8 JSON, or its root
    is of another type. NaN and Infinity, which Python's json accepts, are left to the value
    checks (:func:`expect_numbers`).
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise DatasetError(f"{path}: not usable JSON (nested too deeply)") from None
    except ValueError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, root_type):
        raise DatasetError(
            f"{path}: expected a JSON {_KINDS[root_type]} at the top, got {_show(data)}"
        )
    return data


_KINDS = {list: "list", dict: "object", str: "string", (int, str): "integer or string"}


def _show(value):
    if value is MISSING:
        return "nothing (the key is missing)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expect(value, kind, at, empty=False):
    """
    `value` if it is a `kind` (list, dict, str, or (int, str) for ids; never a bool), else
    raise ShapeError naming `at`. `empty`: an empty string is acceptable.
    """
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and kind is str and not empty and not value.strip():
        ok = False
    if not ok:
        article = "an" if _KINDS[kind][0] in "aeiou" else "a"
        raise ShapeError(f"{at}: expected {article} {_KINDS[kind]}, got {_show(value)}")
    return value


def _hashable(value):
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def expect_numbers(value, count, at):
    """A list of `count` finite floats from a JSON list of numbers, else ShapeError."""
    numbers = [_number(v) for v in value] if isinstance(value, list) else []
    if len(numbers) != count or None in numbers:
        raise ShapeError(f"{at}: expected {count} finite numbers, got {_show(value)}")
    return numbers


def expect_size(image, at):
    """
    (height, width) of a COCO image entry: positive integers whose product is within
    `data_policy().max_image_pixels`, or (None, None) when the entry states no size.
    """
    if "height" not in image and "width" not in image:
        return None, None
    size = []
    for key in ("height", "width"):
        value = image.get(key, MISSING)
        number = _number(value) if value is not MISSING else None
        if number is None or number < 1 or number != int(number):
            raise ShapeError(f"{at}.{key}: expected a positive integer, got {_show(value)}")
        size.append(int(number))
    if size[0] * size[1] > data_policy().max_image_pixels:
        raise ShapeError(
            f"{at}: {size[1]}x{size[0]} is more pixels than CXR.DATA.MAX_IMAGE_PIXELS "
            f"({data_policy().max_image_pixels})"
        )
    return tuple(size)


def _coco_lists(coco, path):
    """The images, annotations and categories lists of a COCO dict, or DatasetError."""
    try:
        return [
            expect(coco.get(key, MISSING), list, key)
            for key in ("images", "annotations", "categories")
        ]
    except ShapeError as e:
        raise DatasetError(f"{path}: {e}; not a COCO instances file") from None


def _image_record(im, at, image_path, extra):
    expect(im, dict, at)
    image_id = expect(im.get("id", MISSING), (int, str), f"{at}.id")
    name = expect(im.get("file_name", MISSING), str, f"{at}.file_name")
    height, width = expect_size(im, at)
    file_name = image_path(name)  # DatasetError when it leaves the dataset folder
    record = {"file_name": file_name, "height": height, "width": width}
    return image_id, {**record, **(extra(im, file_name) if extra else {}), "annotations": []}


def read_coco_images(path, log, image_path, extra=None):
    """
    The file's JSON and its images as records without annotations.

    Args:
        path (str): the COCO json.
        log (ProblemLog): an image of the wrong shape, listed twice (same id or same file)
            or outside the dataset folder is reported and skipped.
        image_path (callable): `file_name` in the json -> the image's path; raises
            DatasetError for a name it refuses (see :func:`~cxr_d2.data.paths.resolve_in_root`).
        extra (callable or None): (image dict, path) -> more fields of the record.

    Returns:
        coco (dict with lists `images`, `annotations`, `categories`), by_id (dict image id
        -> record with file_name, height, width (None when the json states none),
        annotations [] and `where`, the place to name in reports).
    """
    coco = read_json(path, dict)
    images, annotations, categories = _coco_lists(coco, path)
    by_id, files = {}, set()
    for k, im in enumerate(images):
        try:
            image_id, record = _image_record(im, f"images[{k}]", image_path, extra)
        except ShapeError as e:
            log.report(path, str(e), "image")
            continue
        except DatasetError as e:
            log.report(f"{path} image id {im.get('id')}", str(e), "image")
            continue
        where = f"{path} image id {image_id}"
        if image_id in by_id or record["file_name"] in files:
            log.report(where, f"image {im.get('file_name')} listed twice", "image")
            continue
        files.add(record["file_name"])
        by_id[image_id] = dict(record, where=where)
    return {"images": images, "annotations": annotations, "categories": categories}, by_id


def _category_names(coco, path, log):
    """COCO category id -> name; entries of the wrong shape or repeated ids are reported."""
    names = {}
    for k, cat in enumerate(coco["categories"]):
        try:
            expect(cat, dict, f"categories[{k}]")
            cid = expect(cat.get("id", MISSING), (int, str), f"categories[{k}].id")
            name = expect(cat.get("name", MISSING), str, f"categories[{k}].name")
        except ShapeError as e:
            log.report(path, f"{e}; its annotations are skipped", None)
            continue
        if cid in names:
            log.report(path, f"categories[{k}]: id {cid!r} repeated; the first is kept", None)
            continue
        names[cid] = name
    return names


def iter_coco_annotations(coco, path, log, by_id, classes):
    """
    Yields (record, category index into `classes`, annotation dict, where) for each
    annotation whose image and category are known; the others are reported and skipped.
    """
    names = _category_names(coco, path, log)
    listed = {
        im.get("id") for im in coco["images"] if isinstance(im, dict) and _hashable(im.get("id"))
    }
    for k, ann in enumerate(coco["annotations"]):
        try:
            expect(ann, dict, f"annotations[{k}]")
            at = f"annotations[{k}].image_id"
            image_id = expect(ann.get("image_id", MISSING), (int, str), at)
            at = f"annotations[{k}].category_id"
            category_id = expect(ann.get("category_id", MISSING), (int, str), at)
            if category_id not in names:
                raise ShapeError(f"{at}: {category_id!r} is not an id of the categories list")
        except ShapeError as e:
            log.report(path, str(e), "annotation")
            continue
        where = f"{path} annotation id {ann.get('id')}"
        record = by_id.get(image_id)
        if record is None:
            why = "was skipped (see above)" if image_id in listed else "is not in the images list"
            log.report(where, f"image id {image_id} {why}", "annotation")
            continue
        category = category_index(log, where, names[category_id], classes)
        if category is not None:
            yield record, category, ann, where
