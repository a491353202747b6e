"""Run-length masks, polygons, mask boxes, box checks, weighted box fusion, split selection."""

import numpy as np
import pytest

from cxr_d2.data.checks import check_box, parse_number
from cxr_d2.data.datasets.vindr_cxr import weighted_box_fusion
from cxr_d2.data.masks import (
    box_of_mask,
    decode_relative_rle,
    encode_relative_rle,
    segmentation_to_mask,
)
from cxr_d2.data.splits import select_split
from cxr_d2.errors import ConfigError, DatasetError


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


def test_box_of_mask_holds_disconnected_regions():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:5, 3:6] = 1
    mask[10:12, 20:25] = 1  # a second region of the same instance
    assert box_of_mask(mask, "m.png") == [3.0, 2.0, 25.0, 12.0]
    with pytest.raises(DatasetError, match=r"m\.png: mask is empty"):
        box_of_mask(np.zeros((4, 4)), "m.png")


def test_polygon_to_mask_matches_pixel_centres():
    # A 10x6 axis-aligned rectangle from x=2..12, y=3..9 covers exactly those pixels.
    mask = segmentation_to_mask([[2, 3, 12, 3, 12, 9, 2, 9]], 16, 16)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (2, 12, 3, 9)
    with pytest.raises(ValueError):
        segmentation_to_mask([[1, 2, 3, 4]], 16, 16)


@pytest.mark.parametrize(
    "box, size, kept, problem",
    [
        ([1, 2, 5, 6], (10, 10), [1, 2, 5, 6], None),
        ([5, 2, 1, 6], (10, 10), None, "x2 < x1"),
        ([1, 2, 1, 6], (10, 10), None, "zero area"),
        ([float("nan"), 2, 5, 6], (10, 10), None, "NaN"),
        ([11, 12, 15, 16], (10, 10), None, "wholly outside"),
        ([-2, 2, 5, 16], (10, 10), [0, 2, 5, 10], "clipped"),
    ],
)
def test_check_box(box, size, kept, problem):
    out, message = check_box(box, *size)
    assert out == kept
    assert (message is None) if problem is None else (problem in message)


def test_parse_number_messages():
    assert parse_number(" 3.5 ", "x") == 3.5
    with pytest.raises(ValueError, match="missing value in column 'w'"):
        parse_number("", "w")
    with pytest.raises(ValueError, match="non-numeric value 'abc' in column 'y'"):
        parse_number("abc", "y")


def test_weighted_box_fusion_by_hand():
    boxes = [[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    labels = [0, 0, 0, 1]
    fused = sorted(weighted_box_fusion(boxes, labels))
    # boxes 0 and 1: IoU 80/120 = .67 > .5 -> mean [1, 0, 11, 10]; the others stay alone.
    assert fused == [([0, 0, 10, 10], 1, 1), ([1, 0, 11, 10], 0, 2), ([50, 50, 60, 60], 0, 1)]
    # weights: the heavier box pulls the fused box towards itself.
    ((box, _, n),) = weighted_box_fusion([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0], [3, 1])
    assert n == 2 and box == [0.5, 0, 10.5, 10]


def _records():
    return [
        {"file_name": f"{p}_{k}.png", "patient_id": p, "official_split": s}
        for p, s in [(f"P{i:03d}", "test" if i < 20 else "trainval") for i in range(200)]
        for k in range(2)
    ]


def test_select_split_random_and_official():
    records = _records()
    parts = {s: select_split(records, s, "random", 3) for s in ("train", "val", "test")}
    assert [len(v) for v in parts.values()] == [320, 40, 40]
    patients = [{r["patient_id"] for r in v} for v in parts.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert parts["train"] != select_split(records, "train", "random", 4)
    assert "official_split" not in parts["train"][0]
    official = {s: select_split(records, s, "official", 0) for s in ("train", "val", "test")}
    assert {r["patient_id"] for r in official["test"]} == {f"P{i:03d}" for i in range(20)}
    assert [len(v) for v in official.values()] == [320, 40, 40]
    with pytest.raises(ConfigError, match="CXR_SPLIT='nope'"):
        select_split(records, "train", "nope", 0)
    with pytest.raises(ConfigError, match="CXR_SPLIT_SEED='x'"):
        select_split(records, "train", "random", "x")
    no_official = [dict(r, official_split=None) for r in records]
    with pytest.raises(DatasetError, match="no official split"):
        select_split(no_official, "train", "official", 0, source="uml_peru")
