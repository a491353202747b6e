"""
Instance masks: run-length masks (SIIM-ACR), polygons and COCO RLE, mask PNGs, and the box of
a mask (the tight XYXY_ABS box holding every foreground pixel, x2 = last column + 1).

Every segmentation is checked (:func:`check_segmentation`, :func:`decode_relative_rle`)
before pycocotools sees it: pycocotools trusts its input, and a NaN or 1e30 polygon
coordinate crashes it or exhausts memory, while RLE counts that do not add up to the image's
pixels decode to uninitialised memory or write beyond the mask.

Used by the source loaders and by the phantom generator (:mod:`cxr_d2.data.phantom`); this
module imports nothing of either.
"""

import math
import re

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures.masks import polygon_area
from PIL import Image

from ..errors import DatasetError
from .checks import coordinate_problem
from .policy import data_policy

__all__ = [
    "decode_relative_rle",
    "encode_relative_rle",
    "mask_to_rle",
    "check_segmentation",
    "rle_string_counts",
    "segmentation_to_mask",
    "read_mask_png",
    "mask_to_box",
]


_UINT = re.compile(r"[0-9]{1,18}")  # 18 digits: beyond any image, within int64


def _relative_rle_values(text):
    values = []
    for token in text.split():
        if not _UINT.fullmatch(token):
            what = (
                "too large" if token.isascii() and token.isdigit() else "not a non-negative integer"
            )
            raise ValueError(f"value {token[:20]!r} is {what}")
        values.append(int(token))
    if len(values) % 2:
        raise ValueError(f"odd number of run-length values ({len(values)})")
    return values


def decode_relative_rle(encoded, height, width):
    """
    Decode a SIIM-ACR run-length mask.

    The pixels are numbered in column-major order (index = x * height + y); the string holds
    pairs "start length" where each start counts from the end of the previous run.

    Args:
        encoded (str): space-separated integers; "-1" (or empty) means no mask.

    Returns:
        ndarray uint8 (height, width), or None for "-1".

    Raises:
        ValueError: a value that is not a non-negative integer, an odd number of values, or
            a run beyond the image.
    """
    text = (encoded or "").strip()
    if text in ("", "-1"):
        return None
    values = _relative_rle_values(text)
    flat = np.zeros(height * width, dtype=np.uint8)
    position = 0
    for start, length in zip(values[0::2], values[1::2]):
        position += start
        if position + length > flat.size:
            raise ValueError(f"run {position}+{length} ends beyond the {width}x{height} image")
        flat[position : position + length] = 1
        position += length
    return flat.reshape(width, height).T.copy()


def encode_relative_rle(mask):
    """Inverse of :func:`decode_relative_rle`: a (H, W) mask to a SIIM-ACR string."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    if not flat.any():
        return "-1"
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    out, position = [], 0
    for s, e in zip(starts, ends):
        out += [int(s - position), int(e - s)]
        position = e
    return " ".join(str(v) for v in out)


def mask_to_rle(mask):
    """(H, W) binary mask -> COCO compressed RLE with `counts` as str (JSON-safe)."""
    rle = mask_util.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _is_count(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0


def rle_string_counts(counts):
    """
    The run lengths of a COCO compressed RLE string, read as pycocotools' `rleFrString` reads
    them (6 bits a character from '0', 5 of value and a continuation bit, the last character's
    bit 4 the sign; from the fourth run on, each value adds to the run two before).

    Returns:
        ndarray int64 (R,): the runs, background first.

    Raises:
        ValueError: a character outside '0'..'o', a number cut short or longer than 6
            characters (more than pycocotools reads without overflow), or a negative run.
    """
    data = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    c = np.frombuffer(data, np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return c
    if c.min() < 0 or c.max() > 63:
        raise ValueError("RLE counts string has a character outside '0'..'o'")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts string ends inside a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 6:
        raise ValueError("RLE counts string has a number longer than 6 characters")
    group = np.repeat(np.arange(ends.size), lengths)
    shift = 5 * (np.arange(c.size) - starts[group])
    x = np.zeros(ends.size, np.int64)
    np.add.at(x, group, (c & 0x1F) << shift)
    negative = (c[ends] & 0x10) != 0
    x[negative] |= np.left_shift(-1, 5 * lengths[negative])
    runs = x.copy()
    runs[1::2] = np.cumsum(x[1::2])
    runs[2::2] = np.cumsum(x[2::2])
    if runs.min() < 0:
        raise ValueError("RLE counts string decodes to a negative run")
    return runs


def _check_rle(segm, height, width):
    """(compressed RLE with str counts, None) or (None, problem); see check_segmentation."""
    size = segm.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_is_count, size))):
        return None, f"RLE size {size!r} is not [height, width]"
    h, w = int(size[0]), int(size[1])
    if height is not None and width is not None and (h, w) != (height, width):
        return None, f"RLE size [{h}, {w}] is not the image's [height, width] [{height}, {width}]"
    if h * w > data_policy().max_image_pixels:
        return None, f"RLE size [{h}, {w}] exceeds CXR.DATA.MAX_IMAGE_PIXELS"
    counts = segm["counts"]
    if isinstance(counts, list):
        if not all(map(_is_count, counts)):
            return None, "RLE counts are not all non-negative integers"
        runs = [int(v) for v in counts]
    elif isinstance(counts, (str, bytes)):
        try:
            runs = rle_string_counts(counts).tolist()
        except ValueError as e:
            return None, str(e)
    else:
        return None, f"RLE counts of type {type(counts).__name__} (a list or a string expected)"
    if sum(runs) != h * w:
        return None, f"RLE counts add up to {sum(runs)} pixels, not height*width = {h * w}"
    if isinstance(counts, list):
        rle = mask_util.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts if isinstance(counts, bytes) else counts.encode()}
        if mask_util.area(rle) != sum(runs[1::2]):  # pycocotools reads it as we do
            return None, "RLE counts string is not decodable"
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}, None


def _cross(a, b, axis, bound):
    t = (bound - a[axis]) / (b[axis] - a[axis])
    p = [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]
    p[axis] = bound
    return p


def clip_polygon(points, width, height):
    """
    The part of a polygon inside the image [0, width] x [0, height] (Sutherland-Hodgman).

    Args:
        points (list[list[float]]): (N, 2) vertices, x then y, in pixels.

    Returns:
        list[list[float]]: the clipped vertices (fewer than 3 when nothing is inside).
    """
    for axis, bound, upper in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        inside = [(p[axis] <= bound) if upper else (p[axis] >= bound) for p in points]
        out = []
        for i, p in enumerate(points):
            if inside[i] != inside[i - 1]:
                out.append(_cross(points[i - 1], p, axis, bound))
            if inside[i]:
                out.append(p)
        points = out
    return points


def _check_polygon(poly, height, width):
    """
    (polygon [x0, y0, ...] inside the image, [] when it has no area there, or None when it is
    unusable; problem or None).
    """
    try:
        xy = [float(v) for v in poly]
    except (TypeError, ValueError):
        return None, "polygon is not a list of numbers [x0, y0, x1, y1, ...]"
    if len(xy) < 6 or len(xy) % 2:
        return None, f"polygon has {len(xy)} values; it needs at least 3 (x, y) points"
    if not all(math.isfinite(v) for v in xy):
        return None, "polygon has a NaN or infinite coordinate"
    far = coordinate_problem(xy, width, height)
    if far:
        return None, f"polygon: {far}"
    points = [xy[k : k + 2] for k in range(0, len(xy), 2)]
    if width is not None and height is not None:
        points = clip_polygon(points, float(width), float(height))
    if len(points) < 3 or polygon_area(*np.asarray(points).T) == 0:
        return [], f"polygon has no area inside the {width}x{height} image; dropped"
    clipped = [v for p in points for v in p]
    if clipped != xy:
        return clipped, f"polygon extends outside the {width}x{height} image; clipped to it"
    return xy, None


def check_segmentation(segm, height, width):
    """
    Validate a COCO `segmentation` against its image, before pycocotools sees it.

    Polygons ([[x0, y0, x1, y1, ...], ...], pixels): every value finite, at least 3 points,
    no coordinate more than one image side outside the image (as boxes,
    :func:`~cxr_d2.data.checks.check_box`); a polygon partly outside is clipped to the image
    and reported, one wholly outside (or of zero area) is dropped, and the segmentation is
    unusable when no polygon remains. RLE ({"size": [h, w], "counts": [...] or "..."}): the
    size equals the image's (height, width), the counts are non-negative integers (or a
    string pycocotools reads to such) adding up to exactly h * w.

    Args:
        segm: the segmentation as the annotation file has it.
        height, width (int or None): the image size; None skips the checks that need it.

    Returns:
        tuple(list or dict or None, str or None): the usable segmentation (polygons as lists
        of floats, clipped; RLE compressed, `counts` a str) or None, and the problem (or None).
    """
    if isinstance(segm, dict) and "counts" in segm:
        return _check_rle(segm, height, width)
    if not isinstance(segm, list) or not segm or not all(isinstance(p, list) for p in segm):
        return None, (
            f"segmentation of type {type(segm).__name__} is neither a list of polygons "
            "[[x0, y0, x1, y1, ...], ...] nor an RLE {size, counts}"
        )
    kept, problems = [], []
    for poly in segm:
        checked, problem = _check_polygon(poly, height, width)
        if checked is None:
            return None, problem
        if problem:
            problems.append(problem)
        if checked:
            kept.append(checked)
    if not kept:
        return None, problems[0]
    return kept, "; ".join(problems) or None


def segmentation_to_mask(segm, height, width):
    """
    COCO `segmentation` (list of polygons [x0, y0, x1, y1, ...], or RLE) -> (H, W) uint8,
    after :func:`check_segmentation` (polygons partly outside are clipped to the image).

    Raises:
        ValueError: the segmentation is unusable (the message says why).
    """
    checked, problem = check_segmentation(segm, height, width)
    if checked is None:
        raise ValueError(problem)
    if isinstance(checked, list):
        return mask_util.decode(mask_util.merge(mask_util.frPyObjects(checked, height, width)))
    return mask_util.decode(checked)


def read_mask_png(path):
    """A binary instance mask PNG -> (H, W) uint8 (nonzero = foreground)."""
    try:
        with Image.open(path) as im:
            return (np.asarray(im.convert("L")) > 0).astype(np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable mask image ({type(e).__name__}: {e})") from None


def mask_to_box(mask, where="mask"):
    """
    The tight box around the foreground of a mask.

    Args:
        mask (ndarray): (H, W) boolean or integer array; nonzero pixels are foreground, in
            one region or several (the box holds them all).
        where (str): names the mask in the error message (e.g. its file and row).

    Returns:
        list[float]: [x1, y1, x2, y2] in XYXY_ABS pixels, x1 the first foreground column and
        x2 the last foreground column + 1 (rows likewise).

    Raises:
        DatasetError: the mask is not 2-D or has no foreground pixel.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise DatasetError(f"{where}: mask must be 2-D [H, W], got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise DatasetError(f"{where}: mask is empty (no foreground pixel), cannot derive a box")
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
