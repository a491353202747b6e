"""
Segmentations are checked before pycocotools sees them (`cxr_d2.data.masks`): a bad one is one
line saying why and its annotation is skipped and counted; an accepted one decodes to what an
independent per-pixel computation gives.
"""

import math

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import cxr_d2.data.masks as masks
from cxr_d2.data.checks import ProblemLog, check_box, check_dataset
from cxr_d2.data.datasets.common import box_annotation
from cxr_d2.data.masks import (
    check_segmentation,
    decode_relative_rle,
    mask_to_rle,
    rle_string_counts,
    segmentation_to_mask,
)

H, W = 16, 20
NAN, INF = float("nan"), float("inf")
SQUARE = [2, 3, 10, 3, 10, 9, 2, 9]  # x 2..10, y 3..9

BAD = {
    "NaN x": ([[NAN, 3, 10, 3, 10, 9]], "NaN or infinite"),
    "inf y": ([[2, INF, 10, 3, 10, 9]], "NaN or infinite"),
    "1e30": ([[1e30, 3, 10, 3, 10, 9]], "more than one image side outside the 20x16"),
    "-1e30": ([[2, -1e30, 10, 3, 10, 9]], "more than one image side outside"),
    "odd length": ([[2, 3, 10, 3, 10, 9, 4]], "7 values; it needs at least 3 (x, y) points"),
    "two points": ([[2, 3, 10, 3]], "4 values"),
    "strings": ([["a", 3, 10, 3, 10, 9]], "not a list of numbers"),
    "flat list": ([2, 3, 10, 3, 10, 9], "neither a list of polygons"),
    "empty list": ([], "neither a list of polygons"),
    "wholly outside": ([[30, 3, 35, 3, 35, 9]], "no area inside the 20x16 image"),
    "zero area": ([[2, 3, 5, 3, 8, 3]], "no area inside"),
    "one bad part": ([SQUARE, [NAN, 0, 1, 1, 2, 2]], "NaN or infinite"),
    "RLE size other": ({"size": [H, W + 1], "counts": [H * (W + 1)]}, "RLE size [16, 21] is not"),
    "RLE size swapped": ({"size": [W, H], "counts": [H * W]}, "is not the image's"),
    "RLE size bad": ({"size": [H], "counts": [H * W]}, "is not [height, width]"),
    "RLE counts short": ({"size": [H, W], "counts": [3, 4]}, "add up to 7 pixels, not"),
    "RLE counts long": ({"size": [H, W], "counts": [H * W, 5]}, "add up to 325 pixels"),
    "RLE negative": ({"size": [H, W], "counts": [H * W + 2, -2]}, "non-negative integers"),
    "RLE float": ({"size": [H, W], "counts": [H * W / 2, H * W / 2]}, "non-negative integers"),
    "RLE counts dict": ({"size": [H, W], "counts": {}}, "a list or a string expected"),
    "string short": ({"size": [H, W], "counts": "0P4"}, "add up to"),
    "string bad char": ({"size": [H, W], "counts": "0P~"}, "outside '0'..'o'"),
    "string NUL": ({"size": [H, W], "counts": "0P\x008"}, "outside '0'..'o'"),
    "string cut": ({"size": [H, W], "counts": "0P8P"}, "ends inside a number"),
    "string 1e30": ({"size": [H, W], "counts": "0" + "o" * 7 + "1"}, "longer than 6"),
    "string negative": ({"size": [H, W], "counts": "1@"}, "negative run"),
}


@pytest.fixture
def no_pycocotools(monkeypatch):
    """Any call into pycocotools fails the test: a rejected segmentation never reaches it."""

    def refuse(*args, **kwargs):
        raise AssertionError("pycocotools called with an unchecked segmentation")

    for name in ("frPyObjects", "decode", "merge", "area", "encode"):
        monkeypatch.setattr(masks.mask_util, name, refuse)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_segmentation_never_reaches_pycocotools(no_pycocotools, case):
    segm, fragment = BAD[case]
    checked, problem = check_segmentation(segm, H, W)
    assert checked is None and fragment in problem and "\n" not in problem, problem
    with pytest.raises(ValueError, match=".+") as e:
        segmentation_to_mask(segm, H, W)
    assert str(e.value) == problem


@pytest.mark.parametrize("case", list(BAD))
def test_box_annotation_skips_and_counts_a_bad_segmentation(case):
    log = ProblemLog("t")
    ann = box_annotation(
        log, "a.json annotation id 7", [2, 3, 10, 9], 0, W, H, segmentation=BAD[case][0]
    )
    assert ann is None and log.skipped == {"annotation": 1}
    (problem,) = log.problems
    assert str(problem).startswith("a.json annotation id 7: ") and BAD[case][1] in str(problem)


def _pixel_centres_inside(points, h, w):
    """Independent rasterisation of a convex polygon: pixel centres on the inner side."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.ones((h, w), bool)
    n = len(points)
    sign = None
    for k in range(n):
        (x0, y0), (x1, y1) = points[k], points[(k + 1) % n]
        cross = (x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)
        s = np.sign(np.sum(cross))
        sign = s if sign is None else sign
        inside &= cross * sign >= 0
    return inside


def test_polygon_partly_outside_is_clipped_to_the_image():
    # x from -5 to 10 and y from 3 to 30 on a 20x16 image: kept x 0..10, y 3..16.
    (clipped,), problem = check_segmentation([[-5, 3, 10, 3, 10, 30, -5, 30]], H, W)
    assert "extends outside the 20x16 image; clipped" in problem
    xy = sorted(zip(clipped[0::2], clipped[1::2]))
    assert xy == [(0, 3), (0, 16), (10, 3), (10, 16)]
    mask = segmentation_to_mask([[-5, 3, 10, 3, 10, 30, -5, 30]], H, W)
    expected = np.zeros((H, W), np.uint8)
    expected[3:16, 0:10] = 1
    assert np.array_equal(mask, expected)


def test_clipped_triangle_rasterises_as_the_original_inside_the_image():
    triangle = [[-12, 2, 25, -6, 14, 24]]  # every vertex outside, within one side
    clipped, problem = check_segmentation(triangle, H, W)
    assert "clipped" in problem and all(0 <= v <= W for v in clipped[0][0::2])
    assert all(0 <= v <= H for v in clipped[0][1::2])
    ours = segmentation_to_mask(triangle, H, W)
    theirs = mask_util.decode(mask_util.frPyObjects(triangle, H, W))[..., 0]
    assert np.sum(ours != theirs) <= H + W  # pycocotools' own edge rounding differs a little
    by_centres = _pixel_centres_inside(list(zip(triangle[0][0::2], triangle[0][1::2])), H, W)
    assert np.sum(ours != by_centres) <= 2 * (H + W)  # edge pixels only
    assert np.array_equal(ours[6:12, 6:12], by_centres[6:12, 6:12])


def test_polygon_inside_is_unchanged():
    assert check_segmentation([SQUARE], H, W) == ([[float(v) for v in SQUARE]], None)


def _runs_by_loop(mask):
    """Independent COCO runs: column-major pixels, background run first."""
    runs, value, n = [], 0, 0
    for x in range(mask.shape[1]):
        for y in range(mask.shape[0]):
            if mask[y, x] != value:
                runs.append(n)
                value, n = mask[y, x], 0
            n += 1
    return runs + [n]


def _decode_by_loop(runs, h, w):
    mask, p = np.zeros((h, w), np.uint8), 0
    for k, n in enumerate(runs):
        for q in range(p, p + n):
            mask[q % h, q // h] = k % 2
        p += n
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_rle_accepted_and_decoded_as_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    runs = _runs_by_loop(mask)
    compressed = mask_to_rle(mask)
    assert rle_string_counts(compressed["counts"]).tolist() == runs
    for segm in (compressed, {"size": [h, w], "counts": runs}):
        checked, problem = check_segmentation(segm, h, w)
        assert problem is None and checked["counts"] == compressed["counts"]
        assert np.array_equal(segmentation_to_mask(segm, h, w), _decode_by_loop(runs, h, w))


def test_hand_worked_rle():
    # 3x2 image, column-major pixels 0..5: 1 background, 3 foreground, 2 background.
    expected = np.array([[0, 1], [1, 0], [1, 0]], np.uint8)
    assert np.array_equal(
        segmentation_to_mask({"size": [3, 2], "counts": [1, 3, 2]}, 3, 2), expected
    )
    assert rle_string_counts(mask_to_rle(expected)["counts"]).tolist() == [1, 3, 2]


@pytest.mark.parametrize(
    "encoded, fragment",
    [
        ("1e30 5", "'1e30' is not a non-negative integer"),
        ("1" + "0" * 30 + " 5", "is too large"),
        ("9" * 5000 + " 5", "is too large"),
        ("-3 2", "'-3' is not"),
        ("1 2 3", "odd number"),
        ("300 30", "ends beyond the 20x16 image"),
        ("1.5 2", "'1.5' is not"),
    ],
)
def test_relative_rle_bad_values(encoded, fragment):
    with pytest.raises(ValueError, match=".+") as e:
        decode_relative_rle(encoded, H, W)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "box, size, fragment",
    [
        ([1e30, 2, 2e30, 6], (10, 10), "wholly outside"),
        ([1, 2, 1e30, 6], (10, 10), "more than one image side outside the 10x10"),
        ([-1e30, 2, 5, 6], (10, 10), "more than one image side outside"),
        ([1, 2, 5, math.inf], (10, 10), "NaN or infinite"),
        ([1, 2, 1e30, 6], (None, None), "beyond any image"),
        ([-20, 2, 5, 6], (10, 10), "more than one image side outside"),
    ],
)
def test_check_box_refuses_corrupt_coordinates(box, size, fragment):
    checked, problem = check_box(box, *size)
    assert checked is None and fragment in problem


def test_check_box_clips_within_one_side():
    assert check_box([-9, 2, 19, 6], 10, 10)[0] == [0, 2, 10, 6]


@pytest.fixture
def segm_dataset(tmp_path):
    """A 20x16 PNG whose record says 16x16, with an RLE of the record's size."""
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((H, W), np.uint8))
    mask = np.zeros((H, H), np.uint8)
    mask[2:5, 2:5] = 1
    record = {
        "file_name": str(path),
        "height": H,
        "width": H,
        "image_id": 0,
        "annotations": [
            {
                "bbox": [2, 2, 5, 5],
                "bbox_mode": 0,
                "category_id": 0,
                "segmentation": mask_to_rle(mask),
            },
        ],
    }
    DatasetCatalog.register("segm_check_t", lambda: [record])
    MetadataCatalog.get("segm_check_t").thing_classes = ["x"]
    yield str(path)
    DatasetCatalog.remove("segm_check_t")
    MetadataCatalog.remove("segm_check_t")


def test_check_dataset_finds_an_rle_that_does_not_fit_its_image(segm_dataset):
    _, problems = check_dataset("segm_check_t", progress=False)
    lines = [str(p) for p in problems]
    assert any(line.startswith(f"{segm_dataset}: image is 20x16") for line in lines), lines
    assert any(
        line.startswith(f"{segm_dataset} annotation 0: RLE size [16, 16] is not the image's")
        for line in lines
    ), lines
