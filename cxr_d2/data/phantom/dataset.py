"""
The phantom dataset on disk: :func:`generate_phantom_dataset` writes the images and a COCO json,
or reuses them when the json records the same generation parameters.

Boxes are ``XYXY_ABS`` in memory (:func:`~cxr_d2.data.masks.mask_to_box`); the COCO json
stores ``XYWH_ABS`` ``[x, y, w, h]``.
"""

from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..masks import mask_to_box
from .lesions import PHANTOM_CLASSES
from .pool import run_workers
from .render import draw_phantom

__all__ = ["GENERATOR_VERSION", "generate_phantom_dataset"]

#: Bumped whenever the rendered images or annotations change; part of the dataset cache key.
GENERATOR_VERSION = 1
_NUM_WORKERS = 2
_POOL_MIN_IMAGES = 48  # below this many images worker processes cost more than they save


def _file_name(i: int) -> str:
    """Relative path (to the dataset root) of image ``i``."""
    return f"images/phantom_{i:05d}.png"


def _render_one(i: int, root: str, size: int, seed: int) -> list[dict]:
    """Draws image ``i`` from ``default_rng([seed, i])``, writes its PNG under ``root``.

    Returns:
        Its COCO annotation dicts without ``id``/``image_id`` (``category_id`` is 1-based).
    """
    img, instances = draw_phantom(np.random.default_rng([seed, i]), size)
    if not cv2.imwrite(os.path.join(root, _file_name(i)), img):
        raise OSError(f"could not write {os.path.join(root, _file_name(i))}")
    anns = []
    for inst in instances:
        x1, y1, x2, y2 = mask_to_box(inst["mask"], _file_name(i))
        rle = mask_utils.encode(np.asfortranarray(inst["mask"].astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "category_id": inst["category_id"] + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(inst["mask"].sum()),
                "iscrowd": 0,
                "segmentation": rle,
            }
        )
    return anns


def _is_cached(root: str, json_path: str, info: dict) -> bool:
    """Whether ``json_path`` exists, records ``info`` and all of its image files exist."""
    try:
        with open(json_path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if data.get("info") != info or len(data.get("images", [])) != info["num_images"]:
        return False
    return all(os.path.isfile(os.path.join(root, im["file_name"])) for im in data["images"])


def generate_phantom_dataset(
    root: str, num_images: int = 600, size: int = 512, seed: int = 0
) -> str:
    """Writes (or reuses) a COCO-format phantom dataset.

    Layout: ``root/images/phantom_00000.png ...`` and ``root/annotations.json`` (COCO instances
    with ``images`` carrying ``patient_id``, 1-based ``categories``, ``annotations`` with
    ``XYWH_ABS`` bbox, area and compressed-RLE segmentation, and ``info`` holding the
    generation parameters). Image ``i`` is drawn from ``np.random.default_rng([seed, i])``.

    If ``annotations.json`` already records the same ``(num_images, size, seed,
    GENERATOR_VERSION)`` and every image exists, returns immediately. Otherwise renders all
    images (2 worker processes for large sets) and writes the json to a temp file that is then
    ``os.replace``-d into place, so an interrupted run never leaves a complete-looking json.

    Args:
        root: Dataset directory (created if missing).
        num_images: Number of images.
        size: Image side length in pixels.
        seed: Dataset seed.

    Returns:
        Path of ``root/annotations.json``.
    """
    json_path = os.path.join(root, "annotations.json")
    info = {
        "num_images": num_images,
        "size": size,
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
    }
    if _is_cached(root, json_path, info):
        return json_path
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    data = _coco_dict(_render_all(root, num_images, size, seed), size, info)
    tmp = f"{json_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, json_path)
    return json_path


def _render_all(root: str, num_images: int, size: int, seed: int) -> list[list[dict]]:
    """Renders images ``0 .. num_images - 1`` with a progress bar; per-image annotation lists.

    Large sets are split over 2 worker processes (:func:`~.pool.run_workers`); small ones, or
    machines with a single core, render in this process.
    """
    workers = min(_NUM_WORKERS, os.cpu_count() or 1)
    with tqdm(total=num_images, desc="Generating phantoms", unit="img") as bar:
        if workers > 1 and num_images >= _POOL_MIN_IMAGES and sys.executable:
            return run_workers(_render_one, (root, size, seed), num_images, workers, bar)
        results = []
        for i in range(num_images):
            results.append(_render_one(i, root, size, seed))
            bar.update()
        return results


def _coco_dict(per_image: list[list[dict]], size: int, info: dict) -> dict:
    """Assembles the COCO json dict from per-image annotation lists (ids 1-based)."""
    images, annotations = [], []
    for i, anns in enumerate(per_image):
        images.append(
            {
                "id": i + 1,
                "file_name": _file_name(i),
                "height": size,
                "width": size,
                "patient_id": f"P{i:05d}",
            }
        )
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(PHANTOM_CLASSES)]
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}
