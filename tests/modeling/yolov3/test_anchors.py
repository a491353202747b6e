"""tools/compute_anchors.py: k-means with 1 - IoU on box shapes, for YOLOv3 and SSD."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from cxr_d2 import CXRError
from cxr_d2.modeling.yolov3.anchor_kmeans import (
    kmeans_iou,
    ssd_priors_from_clusters,
    wh_iou_np,
    yolov3_anchors_from_clusters,
)

from tests.helpers import TINY


def test_kmeans_recovers_separated_shapes():
    rng = np.random.default_rng(0)
    shapes = np.array([[10, 10], [40, 20], [20, 80]], dtype=float)
    wh = np.concatenate([s * rng.uniform(0.97, 1.03, size=(30, 2)) for s in shapes])
    centroids, mean_iou = kmeans_iou(wh, 3, seed=1)
    # sorted by area: 100, 800, 1600
    np.testing.assert_allclose(centroids, shapes, rtol=0.03)
    assert mean_iou > 0.9
    exact, iou = kmeans_iou(np.repeat(shapes, 4, axis=0), 3)
    np.testing.assert_allclose(exact, shapes) and math.isclose(iou, 1.0)


def test_kmeans_distance_is_iou_not_euclidean():
    # 4x100 and 100x4 are far apart in IoU though close in |w - h|... and both far from 10x10
    wh = np.array([[4, 100], [4, 100], [100, 4], [100, 4]], dtype=float)
    centroids, mean_iou = kmeans_iou(wh, 2)
    assert sorted(map(tuple, centroids)) == [(4, 100), (100, 4)] and mean_iou == 1.0
    assert wh_iou_np(np.array([[4.0, 100.0]]), np.array([[100.0, 4.0]]))[0, 0] == pytest.approx(
        16 / 784
    )


def test_too_few_boxes_is_an_error():
    with pytest.raises(ValueError, match="2 boxes cannot make 9 clusters"):
        kmeans_iou(np.ones((2, 2)), 9)


def test_cluster_to_config_conversion():
    c = np.array([[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [6, 6]], dtype=float)
    assert yolov3_anchors_from_clusters(c, 3) == [
        [[1, 1], [2, 2]],
        [[3, 3], [4, 4]],
        [[5, 5], [6, 6]],
    ]
    priors = ssd_priors_from_clusters(np.array([[10.0, 10.0], [40.0, 10.0], [30.0, 30.0]]))
    assert priors["MIN_SIZES"] == [10.0, 20.0, 30.0]
    assert priors["MAX_SIZES"] == [20.0, 30.0, 45.0]  # the last continues the ratio 30/20
    assert priors["ASPECT_RATIOS"] == [[2.0], [2.0, 4.0], [2.0]]


def _load_tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        "compute_anchors", os.path.join(repo_root, "tools", "compute_anchors.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_on_a_registered_dataset(tiny_phantom, repo_root, capsys):
    tool = _load_tool(repo_root)
    assert tool.main([f"{TINY}_train", "--for", "yolov3", "--input-size", "128"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("command line:"))
    anchors = json.loads(line.split("ANCHORS", 1)[1].strip().strip('"'))
    assert len(anchors) == 3 and all(len(level) == 3 for level in anchors)
    areas = [w * h for level in anchors for w, h in level]
    assert areas == sorted(areas) and max(areas) <= 128 * 128
    assert (
        tool.main([f"{TINY}_train", "--for", "ssd", "--num-anchors", "4", "--input-size", "128"])
        == 0
    )
    assert "MODEL.SSD.PRIOR.MIN_SIZES" in capsys.readouterr().out
    with pytest.raises(CXRError, match=f"dataset '{TINY}_nope' is not registered"):
        tool.main([f"{TINY}_nope"])


def test_tool_prints_one_error_line(repo_root):
    cmd = [
        sys.executable,
        os.path.join(repo_root, "tools", "compute_anchors.py"),
        "cxr_phantom_nope",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == (
        "error: dataset 'cxr_phantom_nope' is not registered; see datasets/README.md for the names"
    )
    assert "Traceback" not in r.stderr
