"""
Problems found in a dataset's files, reported one line each ("<file>:<row>: <what>") and
counted, never silently dropped.

Loaders report every skipped row, box or image through a :class:`ProblemLog`; the warnings go
to the log, and :func:`collect_problems` lets a tool (``tools/check_dataset.py``) gather them.
"""

import contextlib
import logging
import math
from collections import Counter

import numpy as np

from .policy import data_policy

__all__ = [
    "Problem",
    "ProblemLog",
    "collect_problems",
    "check_box",
    "coordinate_problem",
    "parse_number",
    "check_dataset",
]

logger = logging.getLogger(__name__)

_COLLECTORS = []


class Problem:
    """One problem: where (file, row or annotation id), what, and what was skipped."""

    __slots__ = ("where", "message", "skipped")

    def __init__(self, where, message, skipped=None):
        self.where, self.message, self.skipped = where, message, skipped

    def __str__(self):
        tail = f" (skipped: {self.skipped})" if self.skipped else ""
        return f"{self.where}: {self.message}{tail}"

    def __repr__(self):
        return f"Problem({str(self)!r})"


@contextlib.contextmanager
def collect_problems():
    """Context manager yielding a list that receives every Problem reported inside it."""
    found = []
    _COLLECTORS.append(found)
    try:
        yield found
    finally:
        _COLLECTORS.remove(found)


class ProblemLog:
    """
    Reports problems of one dataset load and counts what was skipped.

    Args:
        dataset (str): the dataset name, prefixed to the summary line.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.problems = []
        self.skipped = Counter()  # "annotation" | "image" | "row" -> count

    def report(self, where, message, skipped=None):
        """Log one problem; `skipped` names what is dropped because of it (or None)."""
        problem = Problem(where, message, skipped)
        self.problems.append(problem)
        if skipped:
            self.skipped[skipped] += 1
        logger.warning(f"{self.dataset}: {problem}")
        for found in _COLLECTORS:
            found.append(problem)

    def replay(self, other):
        """
        Take over the problems of an earlier load of the same files (`other`, a ProblemLog)
        without logging them again; collectors still receive them.
        """
        self.problems += other.problems
        self.skipped.update(other.skipped)
        for found in _COLLECTORS:
            found.extend(other.problems)

    def skip(self, what):
        """Count one more `what` skipped for a problem already reported."""
        self.skipped[what] += 1

    def summarize(self, num_images, num_annotations):
        """Log the one-line summary of the load (what was kept and skipped)."""
        kept = f"{num_images} images, {num_annotations} annotations"
        if not self.problems:
            logger.info(f"{self.dataset}: loaded {kept}")
            return
        skipped = ", ".join(f"{n} {what}(s)" for what, n in sorted(self.skipped.items()))
        logger.warning(
            f"{self.dataset}: loaded {kept}; {len(self.problems)} problem(s) reported above"
            + (f", skipped {skipped}" if skipped else "")
        )


def parse_number(value, column):
    """
    A finite float from a CSV cell, or raise ValueError with a message naming `column`.
    """
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError(f"missing value in column '{column}'")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"non-numeric value {text!r} in column '{column}'") from None
    if not math.isfinite(number):
        raise ValueError(f"value {text!r} in column '{column}' is not a finite number")
    return number


def coordinate_problem(values, width, height):
    """
    The first coordinate of `values` (x, y pairs in pixels) that cannot be a pixel coordinate
    of its image, as a message, or None.

    A coordinate may lie outside the image (it is clipped) but not more than one image side
    beyond it: x in [-width, 2 * width], y in [-height, 2 * height]. With the size unknown
    (None), |coordinate| may not exceed `data_policy().max_image_pixels` (no side is longer).
    Such values (e.g. 1e30) are corrupt numbers, not annotations.
    """
    if width is None or height is None:
        limit = data_policy().max_image_pixels
        for v in values:
            if abs(v) > limit:
                return f"coordinate {v:g} is beyond any image (CXR.DATA.MAX_IMAGE_PIXELS {limit})"
        return None
    for k, v in enumerate(values):
        side = width if k % 2 == 0 else height
        if not -side <= v <= 2 * side:
            return (
                f"coordinate {v:g} is more than one image side outside the {width}x{height} "
                "image (not a pixel coordinate)"
            )
    return None


def check_box(box, width, height):
    """
    Validate one XYXY_ABS box against its image.

    Args:
        box (sequence[float]): x1, y1, x2, y2 in pixels (x2, y2 exclusive).
        width, height (int or None): image size; None skips the image-bounds checks.

    Returns:
        tuple(list[float] or None, str or None): the box (clipped to the image when it only
        partly leaves it) or None when it is unusable, and the problem found (or None).
        Unusable: not 4 finite numbers, x2 <= x1 or y2 <= y1, wholly outside the image, or a
        coordinate more than one image side outside it (:func:`coordinate_problem`).
    """
    if len(box) != 4:
        return None, f"box {list(box)} does not have 4 coordinates"
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, f"box {[x1, y1, x2, y2]} has a NaN or infinite coordinate"
    if x2 < x1 or y2 < y1:
        return None, f"box {[x1, y1, x2, y2]} has x2 < x1 or y2 < y1"
    if x2 == x1 or y2 == y1:
        return None, f"box {[x1, y1, x2, y2]} has zero area"
    if width is not None and height is not None:
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            return None, f"box {[x1, y1, x2, y2]} lies wholly outside the {width}x{height} image"
    far = coordinate_problem([x1, y1, x2, y2], width, height)
    if far:
        return None, f"box {[x1, y1, x2, y2]}: {far}"
    if width is None or height is None:
        return [x1, y1, x2, y2], None
    clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
    if clipped != [x1, y1, x2, y2]:
        return clipped, (
            f"box {[x1, y1, x2, y2]} extends outside the {width}x{height} image; clipped to "
            f"{[round(v, 2) for v in clipped]}"
        )
    return clipped, None


def _percentiles(values, qs=(0, 5, 25, 50, 75, 95, 100)):
    if not values:
        return {}
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(np.asarray(values), qs))}


def check_dataset(name, image_format="L", decode=True, progress=True):
    """
    Load a registered dataset and decode every image, collecting every problem.

    Problems: those the loader reports (file and row: missing or unreadable images, bad
    coordinates, boxes outside the image or of zero area, unusable segmentations, unknown
    classes, duplicates), a dataset with no image (the loader's DatasetError, e.g. every row
    skipped), and for each image: unreadable or undecodable file, decoded size different from
    the record's `height` x `width`, and boxes or segmentations (polygons, RLE size and
    counts) that do not fit the decoded image.

    Returns:
        tuple(dict, list[Problem]): the summary (images, images without annotations,
        instances per class, box size percentiles) and the problems.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode
    from tqdm import tqdm

    from ..errors import DatasetError
    from .dicom import read_image
    from .masks import check_segmentation

    with collect_problems() as problems:
        log = ProblemLog(name)
        try:
            dicts = DatasetCatalog.get(name)
        except DatasetError as e:  # e.g. no image left: the load's problems are collected
            log.report(name, str(e).replace(f"dataset {name} ", "", 1))
            dicts = []
        classes = MetadataCatalog.get(name).get("thing_classes", [])
        per_class, sides, widths, heights = Counter(), [], [], []
        for record in tqdm(dicts, desc=f"Decoding {name}", unit="img", disable=not progress):
            where = record["file_name"]
            size = (record.get("height"), record.get("width"))
            if decode:
                try:
                    image = read_image(record["file_name"], image_format)
                    if image.shape[:2] != size:
                        log.report(
                            where,
                            f"image is {image.shape[1]}x{image.shape[0]} but the "
                            f"annotation says {size[1]}x{size[0]}",
                        )
                        size = image.shape[:2]
                except DatasetError as e:
                    log.report(where, str(e).replace(f"{where}: ", "", 1))
            for k, ann in enumerate(record.get("annotations", [])):
                at = f"{where} annotation {k}"
                category = ann.get("category_id")
                if not isinstance(category, int) or not 0 <= category < len(classes):
                    log.report(at, f"category_id {category!r} is not a class of {name}")
                else:
                    per_class[classes[category]] += 1
                box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
                checked, problem = check_box(box, size[1], size[0])
                if problem:
                    log.report(at, problem)
                if "segmentation" in ann:
                    problem = check_segmentation(ann["segmentation"], size[0], size[1])[1]
                    if problem:
                        log.report(at, problem)
                if checked:
                    w, h = checked[2] - checked[0], checked[3] - checked[1]
                    widths.append(w), heights.append(h), sides.append(math.sqrt(w * h))
    summary = {
        "dataset": name,
        "images": len(dicts),
        "images_without_annotations": sum(1 for d in dicts if not d.get("annotations")),
        "instances": sum(per_class.values()),
        "instances_per_class": {c: per_class.get(c, 0) for c in classes},
        "box_sqrt_area": _percentiles(sides),
        "box_width": _percentiles(widths),
        "box_height": _percentiles(heights),
    }
    return summary, list(problems)
