"""Run-length masks (SIIM-ACR), polygons and the box of a mask (`cxr_d2.data.masks`)."""

import numpy as np
import pytest

from cxr_d2.data.masks import (
    decode_relative_rle,
    encode_relative_rle,
    mask_to_box,
    segmentation_to_mask,
)
from cxr_d2.errors import DatasetError


def _decode_by_loop(encoded, height, width):
    """Independent per-pixel decoding of SIIM's format (column-major, relative starts)."""
    mask = np.zeros((height, width), np.uint8)
    values = [int(v) for v in encoded.split()]
    position = 0
    for start, length in zip(values[0::2], values[1::2]):
        position += start
        for p in range(position, position + length):
            mask[p % height, p // height] = 1  # column-major: index = x * height + y
        position += length
    return mask


def test_relative_rle_by_hand():
    # 4x3 image (H=4, W=3): pixels 1,2 (x=0, y=1..2) then, 3 further on, pixels 6,7 (x=1, y=2..3).
    mask = decode_relative_rle("1 2 3 2", height=4, width=3)
    expected = np.zeros((4, 3), np.uint8)
    expected[1:3, 0] = 1
    expected[2:4, 1] = 1
    assert np.array_equal(mask, expected)
    assert decode_relative_rle("-1", 4, 3) is None and decode_relative_rle(" -1", 4, 3) is None


def test_relative_rle_against_loop_and_round_trip():
    rng = np.random.default_rng(0)
    mask = (rng.random((37, 29)) < 0.3).astype(np.uint8)
    encoded = encode_relative_rle(mask)
    assert np.array_equal(_decode_by_loop(encoded, 37, 29), mask)
    assert np.array_equal(decode_relative_rle(encoded, 37, 29), mask)
    for bad in ("1 2 3", "0 500", "-3 2"):
        with pytest.raises(ValueError):
            decode_relative_rle(bad, 10, 10)


def _box_by_loop(mask):
    """Independent box: every foreground pixel (x, y) visited, x2/y2 one past the last."""
    x1 = y1 = float("inf")
    x2 = y2 = -float("inf")
    for y in range(mask.shape[0]):
        for x in range(mask.shape[1]):
            if mask[y, x]:
                x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x + 1), max(y2, y + 1)
    return [float(x1), float(y1), float(x2), float(y2)]


def test_mask_to_box_by_hand():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:8] = True  # rows 2..4, cols 3..7
    assert mask_to_box(mask) == [3.0, 2.0, 8.0, 5.0]
    mask[8, 1] = True  # a stray pixel at x=1, y=8 widens the box
    assert mask_to_box(mask) == [1.0, 2.0, 8.0, 9.0]
    single = np.zeros((9, 9), np.uint8)
    single[5, 7] = 255  # x=7, y=5; any nonzero value is foreground
    box = mask_to_box(single)
    assert box == [7.0, 5.0, 8.0, 6.0] and all(isinstance(v, float) for v in box)


def test_mask_to_box_holds_disconnected_regions():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:6] = 1
    mask[10:12, 20:25] = 1  # a second region of the same instance
    assert mask_to_box(mask, "m.png") == [3.0, 2.0, 25.0, 12.0]


def test_mask_to_box_against_a_pixel_loop():
    rng = np.random.default_rng(0)
    for k in range(20):
        mask = rng.random((int(rng.integers(1, 24)), int(rng.integers(1, 24)))) < 0.02 * (k + 1)
        mask[rng.integers(mask.shape[0]), rng.integers(mask.shape[1])] = True
        assert mask_to_box(mask) == _box_by_loop(mask)


def test_mask_to_box_errors_name_the_mask():
    with pytest.raises(DatasetError, match=r"m\.png: mask is empty"):
        mask_to_box(np.zeros((4, 4)), "m.png")
    with pytest.raises(DatasetError, match=r"scan\.png: mask must be 2-D"):
        mask_to_box(np.ones((2, 3, 3), bool), "scan.png")


def test_polygon_to_mask_matches_pixel_centres():
    # A 10x6 axis-aligned rectangle from x=2..12, y=3..9 covers exactly those pixels.
    mask = segmentation_to_mask([[2, 3, 12, 3, 12, 9, 2, 9]], 16, 16)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (2, 12, 3, 9)
    with pytest.raises(ValueError):
        segmentation_to_mask([[1, 2, 3, 4]], 16, 16)
