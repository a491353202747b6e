"""
Instance masks: run-length masks (SIIM-ACR), polygons and COCO RLE, mask PNGs, and the box of
a mask (the tight XYXY_ABS box holding every foreground pixel, x2 = last column + 1).

Used by the source loaders and by the phantom generator (:mod:`cxr_d2.data.phantom`); this
module imports nothing of either.
"""

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from ..errors import DatasetError

__all__ = [
    "decode_relative_rle",
    "encode_relative_rle",
    "mask_to_rle",
    "segmentation_to_mask",
    "read_mask_png",
    "mask_to_box",
]


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
        ValueError: odd number of values, negative length, or a run beyond the image.
    """
    text = (encoded or "").strip()
    if text in ("", "-1"):
        return None
    values = np.array([int(v) for v in text.split()], dtype=np.int64)
    if values.size % 2:
        raise ValueError(f"odd number of run-length values ({values.size})")
    flat = np.zeros(height * width, dtype=np.uint8)
    position = 0
    for start, length in zip(values[0::2], values[1::2]):
        if start < 0 or length < 0:
            raise ValueError(f"negative run start/length ({start} {length})")
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


def segmentation_to_mask(segm, height, width):
    """
    COCO `segmentation` (list of polygons [x0, y0, x1, y1, ...], or RLE) -> (H, W) uint8.
    """
    if isinstance(segm, list):
        polys = [np.asarray(p, dtype=np.float64).ravel().tolist() for p in segm]
        if not polys or any(len(p) < 6 or len(p) % 2 for p in polys):
            raise ValueError("a polygon needs at least 3 (x, y) points")
        rles = mask_util.frPyObjects(polys, height, width)
        return mask_util.decode(mask_util.merge(rles))
    if isinstance(segm, dict) and "counts" in segm:
        if isinstance(segm["counts"], list):  # uncompressed RLE
            segm = mask_util.frPyObjects(segm, height, width)
        return mask_util.decode(segm)
    raise ValueError(f"unknown segmentation type {type(segm).__name__}")


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
