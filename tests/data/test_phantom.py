"""Tests for the procedural chest X-ray phantom generator (``cxr_d2.data.phantom``)."""

import json
import math
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cxr_d2.data.masks import mask_to_box
from cxr_d2.data.phantom import (
    GENERATOR_VERSION,
    PHANTOM_CLASSES,
    dataset,
    draw_phantom,
    generate_phantom_dataset,
    pool,
    render,
)


def _where_box(mask: np.ndarray) -> list[float]:
    """Independent XYXY box (exclusive x2/y2) from the foreground coordinates."""
    ys, xs = np.where(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _phantoms(n: int, size: int = 512, seed: int = 7):
    """The first ``n`` phantoms drawn the way the dataset draws them."""
    return [draw_phantom(np.random.default_rng([seed, i]), size) for i in range(n)]


# ---------------------------------------------------------------------------- draw_phantom


def test_draw_phantom_is_deterministic():
    img_a, inst_a = draw_phantom(np.random.default_rng([3, 1]))
    img_b, inst_b = draw_phantom(np.random.default_rng([3, 1]))
    assert img_a.dtype == np.uint8 and img_a.shape == (512, 512)
    np.testing.assert_array_equal(img_a, img_b)
    assert len(inst_a) == len(inst_b)
    for a, b in zip(inst_a, inst_b):
        assert a["category_id"] == b["category_id"]
        np.testing.assert_array_equal(a["mask"], b["mask"])
    img_c, _ = draw_phantom(np.random.default_rng([3, 2]))
    assert np.abs(img_a.astype(int) - img_c).mean() > 1.0


def test_instances_are_valid_and_boxes_match():
    for img, instances in _phantoms(16):
        assert len(instances) <= 3
        for inst in instances:
            assert 0 <= inst["category_id"] < len(PHANTOM_CLASSES)
            mask = inst["mask"]
            assert mask.dtype == bool and mask.shape == img.shape
            assert mask.any()
            n_labels, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
            assert n_labels == 2, "each instance must be one connected region"
            assert mask_to_box(mask) == _where_box(mask)


def test_lesions_change_exactly_their_masks():
    """The lesion-free render of the same film differs only inside the lesion masks."""
    for i in range(12):
        with_lesions, instances = render._draw(np.random.default_rng([7, i]), 256, True)
        without, none = render._draw(np.random.default_rng([7, i]), 256, False)
        assert none == []
        union = np.zeros(with_lesions.shape, bool)
        for inst in instances:
            union |= inst["mask"]
        changed = with_lesions != without
        assert not changed[~union].any()
        if union.any():
            assert changed[union].mean() > 0.95


def test_lesions_are_visible_against_their_surroundings():
    kernel = np.ones((9, 9), np.uint8)
    seen = 0
    for img, instances in _phantoms(16):
        union = np.zeros(img.shape, bool)
        for inst in instances:
            union |= inst["mask"]
        for inst in instances:
            mask = inst["mask"]
            ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~union
            contrast = abs(float(img[mask].mean()) - float(img[ring].mean()))
            assert contrast > 10.0, (PHANTOM_CLASSES[inst["category_id"]], contrast)
            seen += 1
    assert seen > 5


def test_class_mix_and_normal_films():
    counts = np.zeros(len(PHANTOM_CLASSES), int)
    normal = 0
    for _, instances in _phantoms(150, size=128, seed=11):
        normal += not instances
        for inst in instances:
            counts[inst["category_id"]] += 1
    assert 0.05 <= normal / 150 <= 0.3
    assert (counts > 10).all(), counts


# ---------------------------------------------------------------------------- dataset


def test_generate_dataset_is_valid_coco(tmp_path):
    json_path = generate_phantom_dataset(str(tmp_path), num_images=12, size=128, seed=5)
    assert json_path == os.path.join(str(tmp_path), "annotations.json")
    coco = COCO(json_path)
    cats = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"]) for c in cats] == list(enumerate(PHANTOM_CLASSES, start=1))
    with open(json_path) as f:
        info = json.load(f)["info"]
    assert info == {
        "num_images": 12,
        "size": 128,
        "seed": 5,
        "generator_version": GENERATOR_VERSION,
    }
    assert len(coco.imgs) == 12 and len(coco.anns) > 0
    for img in coco.imgs.values():
        assert img["file_name"] == f"images/phantom_{img['id'] - 1:05d}.png"
        assert img["patient_id"] == f"P{img['id'] - 1:05d}"
        pixels = cv2.imread(os.path.join(str(tmp_path), img["file_name"]), cv2.IMREAD_UNCHANGED)
        assert pixels.shape == (img["height"], img["width"]) == (128, 128)
    for ann in coco.anns.values():
        assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 4
        assert isinstance(ann["segmentation"]["counts"], str)
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        x, y, w, h = ann["bbox"]
        assert mask_to_box(mask) == [x, y, x + w, y + h]
        assert ann["area"] == mask.sum()
        assert coco.annToMask(ann).sum() == mask.sum()


def test_generate_dataset_matches_draw_phantom(tmp_path):
    generate_phantom_dataset(str(tmp_path), num_images=3, size=128, seed=9)
    coco = COCO(os.path.join(str(tmp_path), "annotations.json"))
    for i in range(3):
        img, instances = draw_phantom(np.random.default_rng([9, i]), 128)
        disk = cv2.imread(str(tmp_path / f"images/phantom_{i:05d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(disk, img)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        assert [a["category_id"] for a in anns] == [d["category_id"] + 1 for d in instances]


def test_generate_dataset_cache_and_regeneration(tmp_path):
    root = str(tmp_path)
    json_path = generate_phantom_dataset(root, num_images=12, size=128, seed=1)
    first_png = os.path.join(root, "images", "phantom_00000.png")
    stamp = (os.stat(json_path).st_mtime_ns, os.stat(first_png).st_mtime_ns)
    assert generate_phantom_dataset(root, num_images=12, size=128, seed=1) == json_path
    assert (os.stat(json_path).st_mtime_ns, os.stat(first_png).st_mtime_ns) == stamp

    generate_phantom_dataset(root, num_images=12, size=128, seed=2)  # new seed: regenerate
    assert os.stat(json_path).st_mtime_ns != stamp[0]
    with open(json_path) as f:
        assert json.load(f)["info"]["seed"] == 2

    os.remove(os.path.join(root, "images", "phantom_00011.png"))  # incomplete: regenerate
    generate_phantom_dataset(root, num_images=12, size=128, seed=2)
    assert os.path.isfile(os.path.join(root, "images", "phantom_00011.png"))

    with open(json_path, "w") as f:
        f.write('{"info": {"num_im')  # truncated json: regenerate
    generate_phantom_dataset(root, num_images=12, size=128, seed=2)
    assert len(COCO(json_path).imgs) == 12
    assert not [n for n in os.listdir(root) if ".tmp" in n]


def test_pool_matches_serial(tmp_path, monkeypatch):
    n = dataset._POOL_MIN_IMAGES
    pooled = generate_phantom_dataset(str(tmp_path / "pool"), num_images=n, size=96, seed=4)
    monkeypatch.setattr(dataset, "_POOL_MIN_IMAGES", 10**9)
    serial = generate_phantom_dataset(str(tmp_path / "serial"), num_images=n, size=96, seed=4)
    with open(pooled) as f, open(serial) as g:
        assert json.load(f) == json.load(g)


class _NullBar:
    """Minimal stand-in for the tqdm progress bar."""

    def update(self, n: int = 1) -> None:
        pass


def test_pool_returns_results_in_item_order():
    results = pool.run_workers(math.pow, (2,), 7, 3, _NullBar())
    assert results == [float(i**2) for i in range(7)]


def test_worker_failure_raises(tmp_path):
    """A worker that cannot write its images makes generation fail loudly."""
    missing = str(tmp_path / "no_such_dir")  # no images/ folder: cv2.imwrite fails
    with pytest.raises(RuntimeError, match="worker process failed in .*_render_one"):
        pool.run_workers(dataset._render_one, (missing, 96, 0), 4, 2, _NullBar())
