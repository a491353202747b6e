"""
Checks of COCO regions (boxes XYWH_ABS, RLE, polygons) before pycocotools' C code reads them,
and the conversion of masks to the compressed RLE that COCOeval and FROC score.

pycocotools trusts what it is given: a compressed RLE string that ends inside a number, holds
a character outside '0'..'o', or whose runs do not add up to height x width makes it read or
write out of bounds; an uncompressed RLE or a polygon in a results file makes `loadRes` fail;
a polygon with coordinates far outside the image makes it allocate without limit. Here each
is a one-line reason instead.
"""

import math
from numbers import Real

import numpy as np
from pycocotools import mask as mask_util

__all__ = [
    "box_problem",
    "decode_counts",
    "is_finite_number",
    "segmentation_problem",
    "to_compressed_rle",
]

# A run length fits 32 bits: 7 characters of 5 bits (the last with the sign bit).
_MAX_CHARS_PER_COUNT = 7
# Polygon coordinates may leave the image by at most this many image sizes.
_POLYGON_MARGIN = 1.0


def decode_counts(counts):
    """
    Decode a compressed RLE string as pycocotools' `rleFrString` does, checking it first.

    Args:
        counts (str): the LEB128-like string of COCO's compressed RLE (characters '0'..'o').

    Returns:
        np.ndarray: (M,) int64 run lengths (alternating background, foreground).

    Raises:
        ValueError: with the reason, where pycocotools would read garbage.
    """
    if not counts.isascii():
        raise ValueError("holds characters that are not ASCII")
    c = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    if ((c < 0) | (c > 63)).any():
        raise ValueError("holds characters outside '0'..'o'")
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("ends inside a number (cut short?)")
    ends = np.flatnonzero(~more)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts + 1
    if lengths.max() > _MAX_CHARS_PER_COUNT:
        raise ValueError("holds a number longer than 32 bits")
    k = np.arange(c.size) - np.repeat(starts, lengths)  # position of each character in its number
    values = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    negative = (c[ends] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * lengths))
    # Counts after the third are stored as differences to the count two places before.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def _rle_problem(segm, height, width):
    size, counts = segm.get("size"), segm.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        return f"has size {size!r}, not [height, width]"
    if list(size) != [height, width]:
        return f"has size {size}, not the image's [{height}, {width}] (height, width)"
    if isinstance(counts, str):
        try:
            runs = decode_counts(counts)
        except ValueError as e:
            return f"has RLE counts that do not decode: the string {e}"
    elif isinstance(counts, list) and all(_is_int(v) for v in counts):
        runs = np.asarray(counts, dtype=np.float64)
    else:
        return "has RLE counts that are neither a compressed string nor a list of integers"
    if (runs < 0).any():
        return "has RLE counts with a negative run"
    if runs.sum() != height * width:
        return (
            f"has RLE runs adding up to {int(runs.sum())} pixels, not the image's "
            f"{height} x {width} = {height * width}"
        )
    return None


def _polygon_problem(segm, height, width):
    if not segm or not all(isinstance(p, list) for p in segm):
        return "is neither an RLE {size, counts} nor a list of polygons [[x1, y1, x2, y2, ...]]"
    for p in segm:
        if len(p) < 6 or len(p) % 2:
            return f"has a polygon of {len(p)} numbers; a polygon needs 3 or more (x, y) points"
        if not all(isinstance(v, Real) and not isinstance(v, bool) for v in p):
            return "has a polygon coordinate that is not a number"
        xy = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            return "has a polygon coordinate that is not finite"
        lo, hi = -_POLYGON_MARGIN, 1 + _POLYGON_MARGIN
        if not (
            (lo * width <= xy[:, 0]).all()
            and (xy[:, 0] <= hi * width).all()
            and (lo * height <= xy[:, 1]).all()
            and (xy[:, 1] <= hi * height).all()
        ):
            return f"has a polygon point far outside the image ({width} x {height} pixels)"
    return None


def segmentation_problem(segm, height, width):
    """
    Why `segm` cannot be scored on an image of (height, width), or None when it can.

    Accepted: compressed RLE (`{"size": [h, w], "counts": str}`), uncompressed RLE (`counts` a
    list of run lengths), or polygons (`[[x1, y1, x2, y2, ...], ...]`, pixel coordinates).
    """
    if isinstance(segm, dict):
        return _rle_problem(segm, height, width)
    if isinstance(segm, list):
        return _polygon_problem(segm, height, width)
    return "is neither an RLE {size, counts} nor a list of polygons"


def to_compressed_rle(segm, height, width):
    """A segmentation that passed `segmentation_problem` as compressed RLE (`counts` a str)."""
    if isinstance(segm, dict) and isinstance(segm["counts"], str):
        return segm
    if isinstance(segm, dict):
        rle = mask_util.frPyObjects(segm, height, width)
    else:
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def box_problem(box):
    """Why `box` is not a COCO box (XYWH_ABS, width and height >= 0), or None when it is."""
    if not isinstance(box, list) or len(box) != 4 or not all(map(is_finite_number, box)):
        return "is not four finite numbers"
    x, y, w, h = box
    if w < 0 or h < 0:
        return f"has a negative {'width' if w < 0 else 'height'}"
    if not (math.isfinite(x + w) and math.isfinite(y + h) and math.isfinite(w * h)):
        return "is too large to score (its corner or area overflows)"
    return None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_finite_number(v):
    """A real number that is not a bool, NaN or infinite."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
