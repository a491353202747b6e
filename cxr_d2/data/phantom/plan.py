"""
What a phantom in a real source's on-disk layout is drawn from, and how.

A *plan* lists the images to write: each an :class:`Item` with its source file name, the
source's own part (train/test/...), and its findings (class, XYXY_ABS box, optional mask,
optional reader). Each image is a lesion-free phantom film
(:func:`~cxr_d2.data.phantom.draw_normal_phantom`) with one lesion drawn inside each finding's
box (or mask). A source supports phantoms by a :class:`PhantomLayout` in its module
(`cxr_d2/data/datasets/<source>.py`), whose writer uses :func:`drawn` and :func:`write_png`.
"""

import os
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import cv2
import numpy as np
from tqdm import tqdm

from .render import draw_normal_phantom

__all__ = [
    "Finding",
    "Item",
    "PlanBuilder",
    "PhantomLayout",
    "draw_item",
    "drawn",
    "write_png",
    "mask_polygon",
]

_LUCENT = ("pneumothorax", "emphysema", "cyst")
_RING = ("cavit",)
_SMALL = ("nodule", "mass", "calcification", "lymph")


@dataclass
class Finding:
    """One lesion: class name, XYXY_ABS box, optional bool (H, W) mask, optional reader."""

    cls: str
    box: list
    mask: np.ndarray = None
    reader: str = None


@dataclass
class Item:
    """One image: its source name (e.g. `00013118_008.png`), source part, findings."""

    name: str
    part: str
    findings: list = field(default_factory=list)


class PlanBuilder:
    """
    The items of a plan read from an annotation file, in order of first mention, with
    coordinates scaled from the file's image side `native` to the phantom's `size`.
    """

    def __init__(self, size, native):
        self.size, self.native = size, native
        self._items = {}

    def item(self, name, part="train"):
        """The :class:`Item` named `name`, created (in `part`) at its first mention."""
        return self._items.setdefault(name, Item(name, part))

    def scaled(self, box):
        """`box` (4 numbers or numeric strings) in phantom pixels, as floats."""
        return [float(v) * (self.size / self.native) for v in box]

    def items(self):
        return list(self._items.values())


@dataclass(frozen=True)
class PhantomLayout:
    """
    How `tools/make_phantom.py` writes a source's on-disk layout.

    Attributes:
        native_size (int): side of the source's published images, px (default phantom size,
            and the size of the coordinates in its annotation files).
        classes (list[str]): the class names a random plan draws from.
        image (callable): `image(i, num_images, normal, rng) -> (name, part)`: file name and
            source part of image `i` of a random plan (`normal`: it has no finding).
        write (callable): `write(root, items, size, seed, **options)` writes the plan's images
            and annotation files under `root`; `options` are make_phantom's `uml_masks` and
            `annotations_file`, each writer reading those it needs.
        read_plan (callable or None): `read_plan(path, plan, log)` adds the images and
            findings of a real annotation file to a :class:`PlanBuilder`, reporting unusable
            rows to `log`; None when plans are only drawn at random.
        normals (bool): the source lists normal films (a random plan then has some).
    """

    native_size: int
    classes: list
    image: Callable
    write: Callable
    read_plan: Optional[Callable] = None
    normals: bool = True


def _blob_in_box(rng, box, size):
    """Bool (S, S) irregular blob inscribed in `box`, touching all four sides of it."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(max(x2, x1 + 2), size), min(max(y2, y1 + 2), size)
    w, h = x2 - x1, y2 - y1
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    rad = (
        1.0
        + 0.12 * np.cos(3 * t + rng.uniform(0, 6.28))
        + 0.08 * np.cos(5 * t + rng.uniform(0, 6.28))
    )
    px, py = np.cos(t) * rad, np.sin(t) * rad
    px = (px - px.min()) / (px.max() - px.min()) * (w - 1)
    py = (py - py.min()) / (py.max() - py.min()) * (h - 1)
    local = np.zeros((h, w), np.uint8)
    cv2.fillPoly(local, [np.round(np.stack([px, py], 1)).astype(np.int32)], 1)
    mask = np.zeros((size, size), bool)
    mask[y1:y2, x1:x2] = local.astype(bool)
    return mask


def _lesion_delta(rng, cls, mask):
    """Float (S, S) intensity change on `mask` (0..255 scale) by the class's appearance."""
    name = cls.lower()
    delta = np.zeros(mask.shape, np.float32)
    if any(k in name for k in _LUCENT):
        delta[mask] = -rng.uniform(35, 55)
    elif any(k in name for k in _RING):
        inner = cv2.erode(
            mask.astype(np.uint8),
            np.ones((3, 3), np.uint8),
            iterations=max(int(0.25 * np.sqrt(mask.sum())), 1),
        ).astype(bool)
        delta[mask] = rng.uniform(55, 75)
        delta[inner] = -rng.uniform(20, 30)
    else:
        gain = rng.uniform(55, 80) if any(k in name for k in _SMALL) else rng.uniform(40, 60)
        mottle = cv2.resize(rng.uniform(0.7, 1.0, (6, 6)).astype(np.float32), mask.shape[::-1])
        delta[mask] = gain * mottle[mask]
    return delta


def draw_item(item, size, seed):
    """
    Draw one image of a plan.

    Returns:
        tuple(ndarray uint8 (S, S), list[ndarray bool (S, S)]): the image and each finding's
        mask (its given mask, or the blob drawn inside its box). A finding whose box lies
        outside the image gets an empty mask (and no lesion).
    """
    rng = np.random.default_rng([seed, zlib.crc32(item.name.encode())])
    image = draw_normal_phantom(rng, size).astype(np.float32)
    masks, done = [], {}
    for f in item.findings:
        key = (tuple(round(v, 1) for v in f.box), f.cls)
        if f.mask is not None:
            mask = f.mask.astype(bool)
        elif key in done:  # another reader's identical box: the same lesion
            mask = done[key]
        else:
            x1, y1, x2, y2 = f.box
            inside = x2 > 0 and y2 > 0 and x1 < size and y1 < size and x2 > x1 and y2 > y1
            mask = _blob_in_box(rng, f.box, size) if inside else np.zeros((size, size), bool)
            if mask.any():
                image += _lesion_delta(rng, f.cls, mask)
            done[key] = mask
        masks.append(mask)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), masks


def drawn(items, size, seed, desc):
    """Yields `(item, image uint8 (S, S), masks)` of each item (see :func:`draw_item`)."""
    for item in tqdm(items, desc=desc, unit="img", leave=False):
        image, masks = draw_item(item, size, seed)
        yield item, image, masks


def write_png(path, image):
    """Writes `image` to `path`, creating its folder."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f"could not write {path}")


def mask_polygon(mask):
    """The outline of the largest region of a bool (H, W) mask: [[x, y], ...] (pixels)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    biggest = max(contours, key=cv2.contourArea)
    return [[int(x), int(y)] for x, y in biggest[:, 0, :]]
