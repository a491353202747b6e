"""Seeded procedural generator of synthetic chest radiographs ("phantoms") with lesions.

The phantoms are the built-in default dataset of ``cxr_d2``: a frontal (PA) chest radiograph
rendered from simple parametric anatomy (body, lung fields, ribs, clavicles, mediastinum, spine,
heart, diaphragm domes, vessel markings) plus 0-3 lesions of four classes
(:data:`PHANTOM_CLASSES`). Conventions used throughout:

* Images are ``uint8`` arrays of shape ``[H, W]`` (``H == W == size``); bright = dense.
* Pixel coordinates are ``(x, y)`` = (column, row), origin at the top-left pixel corner.
* Boxes are ``XYXY_ABS`` ``[x1, y1, x2, y2]`` with exclusive ``x2``/``y2`` (see
  :func:`mask_to_box`); the COCO json stores ``XYWH_ABS`` ``[x, y, w, h]``.
* Radiological convention: the patient's right is shown on the image left, so the heart sits
  right of the image centre, over the image-right (patient-left) lung.

Every lesion changes the image only inside its own mask (lesions are added after the anatomy
blur, and the noise does not depend on the lesions), so masks and boxes are exact.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

__all__ = [
    "PHANTOM_CLASSES",
    "GENERATOR_VERSION",
    "mask_to_box",
    "draw_phantom",
    "draw_normal_phantom",
    "generate_phantom_dataset",
]

PHANTOM_CLASSES = ["Airspace Consolidation", "Cavitation", "Lymphadenopathy", "Pleural Effusion"]

#: Bumped whenever the rendered images or annotations change; part of the dataset cache key.
GENERATOR_VERSION = 1

_NORMAL_FRACTION = 0.15  # probability that a film has no lesion
_NUM_LESIONS_P = (0.5, 0.33, 0.17)  # probabilities of 1, 2, 3 lesions on an abnormal film
_MAX_OVERLAP = 0.15  # max overlap of two lesions, as a fraction of the smaller one's area
_NUM_WORKERS = 2
_POOL_MIN_IMAGES = 48  # below this many images worker processes cost more than they save
_TAG = "PHANTOM-RESULT "  # prefix of the result lines a worker prints on stdout


def mask_to_box(mask: np.ndarray, source: str = "mask") -> list[float]:
    """Tight box around the foreground of a 2-D mask.

    Args:
        mask: Boolean or integer array of shape ``[H, W]``; nonzero pixels are foreground.
        source: Name used in the error message (e.g. the file the mask came from).

    Returns:
        ``[x1, y1, x2, y2]`` in ``XYXY_ABS`` pixel units as floats, where ``x1`` is the first
        foreground column and ``x2`` the last foreground column + 1 (rows likewise), so the
        box contains every foreground pixel.

    Raises:
        ValueError: If ``mask`` is not 2-D or has no foreground pixel.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{source}: mask must be 2-D [H, W], got shape {mask.shape}")
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"{source}: mask is empty (no foreground pixel), cannot derive a box")
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


# --------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------


@dataclass
class _Chest:
    """Geometry of one phantom shared by the anatomy and lesion renderers.

    Attributes:
        size: Image side length ``S`` in pixels.
        xx: float32 ``[1, S]`` column (x) coordinate of each pixel column (broadcastable).
        yy: float32 ``[S, 1]`` row (y) coordinate of each pixel row (broadcastable).
        mid: x of the midline (spine axis).
        med_half: float32 ``[S]`` half-width of the mediastinum at each row.
        lungs: Two bool ``[S, S]`` lung-field masks: index 0 = image-left (patient right),
            index 1 = image-right (patient left).
        lung_soft: float32 ``[S, S]`` soft-edged union of the lung fields, values in [0, 1].
        dome: float32 ``[S]``: y of the diaphragm (upper border of the abdomen) per column.
        tops: y of each lung apex.
        bottoms: y of each costophrenic angle (lowest point of each lung).
        air: Intensity by which the lung fields are darker than soft tissue.
    """

    size: int
    xx: np.ndarray
    yy: np.ndarray
    mid: float
    med_half: np.ndarray
    lungs: list[np.ndarray]
    lung_soft: np.ndarray
    dome: np.ndarray
    tops: list[float]
    bottoms: list[float]
    air: float

    @property
    def scale(self) -> float:
        """Pixels per pixel at the reference size 512."""
        return self.size / 512.0


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred float32 copy of an ``[H, W]`` mask (soft edges, values in [0, 1]).

    Wide blurs (``sigma`` > 4 px) run at quarter resolution, which is much faster and looks the
    same for these smooth anatomical edges.
    """
    img = mask.astype(np.float32)
    if sigma <= 4.0:
        return cv2.GaussianBlur(img, (0, 0), max(float(sigma), 0.3))
    h, w = img.shape
    small = cv2.resize(img, ((w + 3) // 4, (h + 3) // 4), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 4.0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _ellipse(size: int, center, axes, angle: float = 0.0) -> np.ndarray:
    """Filled ellipse as a bool ``[size, size]`` mask.

    Args:
        size: Image side length.
        center: ``(x, y)`` centre in pixels.
        axes: ``(a, b)`` semi-axes in pixels (a along x before rotation).
        angle: Rotation in degrees, clockwise on screen (OpenCV convention, y down).
    """
    canvas = np.zeros((size, size), np.uint8)
    c = tuple(int(round(v * 16)) for v in center)
    a = tuple(max(int(round(v * 16)), 1) for v in axes)
    cv2.ellipse(canvas, c, a, float(angle), 0, 360, 1, -1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def _chest_geometry(rng: np.random.Generator, size: int) -> _Chest:
    """Samples the chest layout (midline, mediastinum, lung fields, domes) of one phantom."""
    s = size / 512.0
    mid = size * (0.5 + rng.uniform(-0.02, 0.02))
    top = size * rng.uniform(0.12, 0.17)
    height = size * rng.uniform(0.56, 0.64)
    bottoms = [top + height - size * rng.uniform(0.01, 0.04), top + height]  # right dome higher
    hw0, hw1 = size * rng.uniform(0.045, 0.06), size * rng.uniform(0.07, 0.09)
    ramp = np.clip((np.arange(size, dtype=np.float32) - top) / height, 0.0, 1.0)
    med_half = (hw0 + (hw1 - hw0) * ramp).astype(np.float32)
    offset, ax = size * rng.uniform(0.19, 0.22), size * rng.uniform(0.15, 0.175)
    dome_h = size * rng.uniform(0.05, 0.08)
    xs, ys = np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)[:, None]
    medial = np.abs(xs - mid) > med_half[:, None] + 2 * s
    lungs, domes = [], []
    for sign, bottom in zip((-1, 1), bottoms):
        cx = mid + sign * offset
        t = np.minimum(np.abs(xs - cx) / ax, 1.0)
        dome = bottom - dome_h * (1.0 - t**2)  # [S]: y of the dome per x, flat beyond the lung
        cy, ay = (top + bottom + 0.05 * size) / 2, (bottom + 0.05 * size - top) / 2
        v = (ys - cy) / ay  # [S, 1]
        u = (xs - cx) / (ax * (1.0 + 0.25 * v))  # narrow apex, wide base
        egg = (u * u + v * v <= 1.0) & (ys < dome)  # sharp costophrenic angle
        lungs.append(egg & medial)
        domes.append(dome.astype(np.float32))
    lung_soft = _soft(lungs[0] | lungs[1], 0.006 * size)
    dome = np.where(xs < mid, domes[0], domes[1])
    air = rng.uniform(0.2, 0.26)
    return _Chest(
        size, xs[None, :], ys, mid, med_half, lungs, lung_soft, dome, [top, top], bottoms, air
    )


def _body_layer(rng: np.random.Generator, chest: _Chest) -> np.ndarray:
    """Background, soft tissue and the abdomen below the diaphragm domes, float32 ``[S, S]``."""
    S, mid, xx, yy = chest.size, chest.mid, chest.xx, chest.yy
    torso = _ellipse(S, (mid, 0.64 * S), (S * rng.uniform(0.45, 0.49), 0.62 * S))
    shoulders = _ellipse(S, (mid, 0.3 * S), (S * rng.uniform(0.5, 0.56), 0.2 * S))
    neck = (np.abs(xx - mid) < 0.1 * S) & (yy < 0.2 * S)
    body = _soft(torso | shoulders | neck, 0.012 * S)
    bg, tissue = rng.uniform(0.02, 0.06), rng.uniform(0.38, 0.45)
    img = bg + (tissue - bg) * body
    img += 0.07 * body * np.exp(-(((xx - mid) / (0.3 * S)) ** 2))  # thicker in the middle
    abdomen = (yy > chest.dome[None, :]) & ~(chest.lungs[0] | chest.lungs[1])
    return img + rng.uniform(0.04, 0.07) * _soft(abdomen, 0.004 * S) * body


def _airway_layer(rng: np.random.Generator, chest: _Chest, heart: np.ndarray) -> np.ndarray:
    """Negative (dark) contribution of the lung fields, trachea and main bronchi, ``[S, S]``.

    The lung is less lucent where the soft-edged ``heart`` mask (float32 ``[S, S]``) covers it.
    """
    S, s, mid = chest.size, chest.scale, chest.mid
    apex = np.clip((chest.yy - chest.tops[0]) / (0.08 * S), 0.0, 1.0)  # apices less lucent
    lungs = chest.lung_soft * (0.75 + 0.25 * apex)
    carina = (mid, chest.tops[0] + 0.22 * (chest.bottoms[1] - chest.tops[0]))
    canvas = np.zeros((S, S), np.uint8)
    left, right = (mid - 0.07 * S, carina[1] + 0.06 * S), (mid + 0.08 * S, carina[1] + 0.08 * S)
    for p0, p1 in (((mid, 0.0), carina), (carina, left), (carina, right)):
        cv2.line(canvas, _fix(p0), _fix(p1), 255, int(round(0.032 * S)), cv2.LINE_AA, 4)
    trachea = cv2.GaussianBlur(canvas.astype(np.float32) / 255.0, (0, 0), 2.5 * s)
    trachea *= rng.uniform(0.06, 0.09) * (1.0 - chest.lung_soft)
    return -chest.air * lungs * (1.0 - 0.75 * heart) - trachea


def _fix(p) -> tuple[int, int]:
    """``(x, y)`` float pixel coordinates as OpenCV 4-bit fixed point (``shift=4``)."""
    return int(round(p[0] * 16)), int(round(p[1] * 16))


def _bone_layer(rng: np.random.Generator, chest: _Chest) -> np.ndarray:
    """Posterior ribs (faded outside the lungs), clavicles and the spine, float32 ``[S, S]``."""
    S, s, mid = chest.size, chest.scale, chest.mid
    canvas = np.zeros((S, S), np.uint8)
    spacing = S * rng.uniform(0.058, 0.07)
    thick = max(int(round(S * rng.uniform(0.018, 0.024))), 1)
    w = S * rng.uniform(0.3, 0.34) / 1.25  # spine to lateral chest wall = 1.25 w
    for k in range(int((max(chest.bottoms) - chest.tops[0]) / spacing) + 1):
        y = chest.tops[0] - 0.02 * S + k * spacing
        b = S * (0.1 + 0.004 * k) * rng.uniform(0.9, 1.1)
        for cx, arc in ((mid - 0.25 * w, (180, 345)), (mid + 0.25 * w, (195, 360))):
            for value, t in ((255, thick), (190, max(thick // 2, 1))):  # cortex, medulla
                cv2.ellipse(
                    canvas, _fix((cx, y + b)), _fix((w, b)), 0, *arc, value, t, cv2.LINE_AA, 4
                )
    near = np.clip(_soft(chest.lungs[0] | chest.lungs[1], 0.03 * S) * 2.5, 0.0, 1.0)
    ribs = canvas.astype(np.float32) / 255.0 * near * (0.4 + 0.6 * chest.lung_soft)
    canvas[:] = 0
    shape = [(0.05, 0.035), (0.12, 0.03), (0.19, 0.018), (0.25, 0.0), (0.3, -0.025)]
    for sign in (-1, 1):  # clavicles: gently rising laterally
        pts = [_fix((mid + sign * dx * S, chest.tops[0] + dy * S)) for dx, dy in shape]
        thick = max(int(round(0.026 * S)), 1)
        cv2.polylines(canvas, [np.array(pts, np.int32)], False, 255, thick, cv2.LINE_AA, 4)
    bones = np.maximum(ribs, canvas.astype(np.float32) / 255.0)
    bones = cv2.GaussianBlur(bones, (0, 0), 1.2 * s) * rng.uniform(0.08, 0.12)
    spine = np.clip((0.035 * S - np.abs(chest.xx - mid)) / (0.008 * S) + 0.5, 0.0, 1.0)
    disc = 0.5 + 0.5 * np.cos(2 * np.pi * chest.yy / (S * rng.uniform(0.05, 0.06)))
    return bones + spine * (0.05 + 0.03 * disc)


def _center_layer(rng: np.random.Generator, chest: _Chest) -> tuple[np.ndarray, np.ndarray]:
    """Mediastinum and heart.

    Returns:
        ``(layer, heart)``: the positive float32 ``[S, S]`` intensity of mediastinum and heart
        (max-combined) and the heart's soft mask (float32 ``[S, S]`` in [0, 1]).
    """
    S, mid = chest.size, chest.mid
    below = chest.yy < chest.bottoms[1] + 0.05 * S
    med = _soft((np.abs(chest.xx - mid) < chest.med_half[:, None]) & below, 0.008 * S)
    hc = (mid + S * rng.uniform(0.04, 0.07), chest.bottoms[1] - S * rng.uniform(0.1, 0.12))
    axes = (S * rng.uniform(0.15, 0.18), S * rng.uniform(0.11, 0.13))
    heart = _ellipse(S, hc, axes, rng.uniform(10, 25))  # left ventricle
    ra = (mid - S * rng.uniform(0.04, 0.06), chest.bottoms[0] - S * rng.uniform(0.08, 0.1))
    heart |= _ellipse(S, ra, (S * 0.07, S * rng.uniform(0.07, 0.09)))  # right atrium
    heart = _soft(heart & (chest.yy < chest.dome[None, :] + 0.01 * S), 0.008 * S)
    return np.maximum(rng.uniform(0.16, 0.2) * med, rng.uniform(0.18, 0.23) * heart), heart


def _vessel_layer(rng: np.random.Generator, chest: _Chest) -> np.ndarray:
    """Faint branching, tapering lung markings spreading from each hilum, float32 ``[S, S]``."""
    S, s = chest.size, chest.scale
    canvas = np.zeros((S, S), np.uint8)
    for k, sign in enumerate((-1, 1)):
        hy = chest.tops[k] + 0.42 * (chest.bottoms[k] - chest.tops[k])
        hub = (chest.mid + sign * (chest.med_half[int(hy)] + 0.01 * S), hy)
        for _ in range(6):
            _vessel(rng, canvas, hub, rng.uniform(-70, 80), 3.0 * s, 0.07 * S, sign, 3)
    return rng.uniform(0.05, 0.07) * _soft(canvas / 255.0, 0.8 * s) * chest.lung_soft


def _vessel(rng, canvas, p, angle: float, width: float, length: float, sign: int, depth: int):
    """Draws one vessel segment from ``p`` (x, y) and recursively its two thinner branches.

    ``angle`` is in degrees below the horizontal, pointing laterally (``sign`` -1 = image left).
    """
    a = np.deg2rad(angle)
    q = (p[0] + sign * length * np.cos(a), p[1] + length * np.sin(a))
    cv2.line(canvas, _fix(p), _fix(q), 255, max(int(round(width)), 1), cv2.LINE_AA, 4)
    if depth > 1:
        for turn in (rng.uniform(-35, -10), rng.uniform(10, 35)):
            _vessel(rng, canvas, q, angle + turn, width * 0.7, length * 0.8, sign, depth - 1)


def _render_anatomy(rng: np.random.Generator, chest: _Chest) -> np.ndarray:
    """Lesion-free, slightly blurred linear intensity image, float32 ``[S, S]``."""
    center, heart = _center_layer(rng, chest)
    img = _body_layer(rng, chest) + _airway_layer(rng, chest, heart) + _bone_layer(rng, chest)
    img += center + _vessel_layer(rng, chest)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), chest.scale * rng.uniform(0.6, 1.1))


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Gamma and contrast (pointwise, monotone), low-frequency and fine noise; uint8 ``[S, S]``."""
    S = img.shape[0]
    out = np.clip(img, 0.0, 1.0) ** rng.uniform(0.85, 1.15)
    out = out * rng.uniform(0.95, 1.15) + rng.uniform(-0.02, 0.04)
    low = cv2.resize(
        rng.standard_normal((6, 6)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC
    )
    fine = rng.standard_normal((S, S), dtype=np.float32)
    out = out + 0.02 * low + rng.uniform(0.008, 0.016) * fine
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Lesions: each returns (mask bool [S, S], delta float32 [S, S] nonzero exactly on the mask)
# or None when the sampled placement is unusable.
# --------------------------------------------------------------------------------------------


def _sample_point(rng: np.random.Generator, region: np.ndarray, margin: float):
    """Random ``(x, y)`` pixel of bool ``region`` at least ``margin`` px inside it, or None."""
    dist = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3)
    ys, xs = np.nonzero(dist > margin)
    if ys.size == 0:
        return None
    i = rng.integers(ys.size)
    return float(xs[i]), float(ys[i])


def _roi(size: int, x: float, y: float, half: float) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of the square window of half-size ``half`` around ``(x, y)``."""
    x0, y0 = max(int(x - half), 0), max(int(y - half), 0)
    return slice(y0, min(int(y + half) + 2, size)), slice(x0, min(int(x + half) + 2, size))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of bool ``mask`` (empty if ``mask`` is empty)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _lowfreq(rng: np.random.Generator, shape, lo: float, hi: float, cells: int = 6) -> np.ndarray:
    """Smooth random float32 field of ``shape`` (bicubic upsampled uniform ``[lo, hi]`` grid)."""
    grid = rng.uniform(lo, hi, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _consolidation(rng: np.random.Generator, chest: _Chest, side: int):
    """Patchy, soft-edged opacity: thresholded sum of Gaussian blobs, clipped to the lung."""
    S, lung = chest.size, chest.lungs[side]
    r = S * rng.uniform(0.025, 0.09)
    pt = _sample_point(rng, lung, 0.6 * r)
    if pt is None:
        return None
    win = _roi(S, pt[0], pt[1], 2.5 * r)
    xx, yy = chest.xx[:, win[1]], chest.yy[win[0], :]
    field = np.zeros((yy.shape[0], xx.shape[1]), np.float32)
    for _ in range(rng.integers(5, 11)):
        cx, cy = (float(v) for v in np.asarray(pt) + rng.normal(0.0, 0.55 * r, 2))
        sig = r * rng.uniform(0.25, 0.45)
        field += rng.uniform(0.6, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sig**2))
    field *= _lowfreq(rng, field.shape, 0.5, 1.0, cells=8)
    field /= max(float(field.max()), 1e-6)
    mask = np.zeros((S, S), bool)
    mask[win] = _largest_component((field > 0.3) & lung[win])
    if mask.sum() < (0.25 * r) ** 2 * np.pi:
        return None
    delta = np.zeros((S, S), np.float32)
    profile = np.clip((field - 0.3) / 0.5, 0.0, 1.0)
    mottle = _lowfreq(rng, field.shape, 0.75, 1.0, cells=12)
    delta[win] = rng.uniform(0.2, 0.3) * (0.4 + 0.6 * profile) * mottle * mask[win]
    return mask, delta


def _blob_polygon(rng, center, radii, angle: float, wobble: float, n: int = 64) -> np.ndarray:
    """Irregular closed polygon ``[n, 2]`` (x, y) around ``center`` with semi-axes ``radii``."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for h in (2, 3, 5):
        rad += wobble / h * rng.uniform(-1, 1) * np.cos(h * t + rng.uniform(0, 2 * np.pi))
    x, y = radii[0] * rad * np.cos(t), radii[1] * rad * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], axis=1)


def _fill(size: int, polys: list[np.ndarray]) -> np.ndarray:
    """Bool ``[size, size]`` mask of the union of filled polygons (float pixel coordinates)."""
    canvas = np.zeros((size, size), np.uint8)
    for poly in polys:
        cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def _cavitation(rng: np.random.Generator, chest: _Chest, side: int):
    """Round/oval lesion: thick bright wall around a lucent (dark) lumen; mask = wall + lumen."""
    S = chest.size
    r = S * rng.uniform(0.022, 0.06)
    pt = _sample_point(rng, chest.lungs[side], 1.1 * r)
    if pt is None:
        return None
    aspect, angle = rng.uniform(0.8, 1.2), rng.uniform(0, np.pi)
    outer = _fill(S, [_blob_polygon(rng, pt, (r * aspect, r / aspect), angle, 0.15)])
    k = rng.uniform(0.45, 0.62)
    shift = np.asarray(pt) + rng.normal(0.0, 0.06 * r, 2)  # mildly eccentric lumen
    inner = _fill(S, [_blob_polygon(rng, shift, (k * r * aspect, k * r / aspect), angle, 0.1)])
    inner &= cv2.erode(outer.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    mask = _largest_component(outer)
    if inner.sum() < 4 or not mask.any():
        return None
    delta = np.where(inner, -rng.uniform(0.09, 0.13), rng.uniform(0.24, 0.32)) * mask
    return mask, delta.astype(np.float32)


def _lymphadenopathy(rng: np.random.Generator, chest: _Chest, side: int):
    """Lobulated hilar opacity: 2-4 overlapping irregular nodes bulging from the mediastinum."""
    S, sign = chest.size, (-1, 1)[side]
    hy = chest.tops[side] + (chest.bottoms[side] - chest.tops[side]) * rng.uniform(0.36, 0.5)
    edge = chest.mid + sign * chest.med_half[int(hy)]
    x, y, r_prev, polys, radii = edge, hy, 0.0, [], []
    for i in range(rng.integers(2, 5)):
        r = S * rng.uniform(0.018, 0.04)
        if i > 0:
            ang = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.5, 0.8) * (r + r_prev)
            x, y = x + step * np.cos(ang), y + step * np.sin(ang)
        x = edge + sign * np.clip((x - edge) * sign, 0.3 * r, 0.9 * r)  # bulge into the lung
        radii_i = (r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15))
        polys.append(_blob_polygon(rng, (x, y), radii_i, rng.uniform(0, np.pi), 0.12, 32))
        r_prev = r
        radii.append(r)
    mask = _largest_component(_fill(S, polys))
    x1, y1, x2, y2 = (int(v) for v in mask_to_box(mask, source="lymphadenopathy"))
    win = (slice(max(y1 - 1, 0), y2 + 1), slice(max(x1 - 1, 0), x2 + 1))
    depth = cv2.distanceTransform(mask[win].astype(np.uint8), cv2.DIST_L2, 3)
    delta = np.zeros((S, S), np.float32)
    core = np.clip(depth / (0.6 * float(np.mean(radii))), 0.0, 1.0)
    delta[win] = rng.uniform(0.18, 0.26) * (0.7 + 0.3 * core) * mask[win]
    return mask, delta


def _effusion(rng: np.random.Generator, chest: _Chest, side: int):
    """Basal opacity below a concave-up meniscus (higher laterally), clipped to the lung."""
    lung, sign = chest.lungs[side], (-1, 1)[side]
    ys, xs = np.nonzero(lung)
    bottom, top = float(ys.max()), float(ys.min())
    depth = (bottom - top) * rng.uniform(0.12, 0.3)
    level = bottom - depth
    x_med = chest.mid + sign * float(chest.med_half[int(level)])
    x_lat = float(xs.min()) if sign < 0 else float(xs.max())
    t = np.clip((chest.xx - x_med) / (x_lat - x_med), 0.0, 1.0)
    meniscus = level - depth * rng.uniform(0.5, 0.9) * t**2
    mask = _largest_component(lung & (chest.yy >= meniscus))
    if mask.sum() < 20:
        return None
    ramp = np.clip((chest.yy - meniscus) / (0.3 * depth), 0.0, 1.0)
    delta = chest.air * rng.uniform(0.85, 1.05) * (0.7 + 0.3 * ramp) * mask
    return mask, delta.astype(np.float32)


_LESIONS = (_consolidation, _cavitation, _lymphadenopathy, _effusion)  # order = PHANTOM_CLASSES


def _place_lesions(rng: np.random.Generator, chest: _Chest) -> list[tuple]:
    """Samples 0 (normal film, ~15 %) or 1-3 lesions.

    Returns:
        List of ``(category_id, mask bool [S, S], delta float32 [S, S])`` with 0-based
        ``category_id`` into :data:`PHANTOM_CLASSES`.
    """
    if rng.random() < _NORMAL_FRACTION:
        return []
    wanted = 1 + int(rng.choice(3, p=_NUM_LESIONS_P))
    used, out = set(), []
    for _ in range(30):
        if len(out) == wanted:
            break
        cat, side = int(rng.integers(4)), int(rng.integers(2))
        if cat >= 2 and (cat, side) in used:  # one hilum / one base per side
            continue
        res = _LESIONS[cat](rng, chest, side)
        if res is None or any(_overlaps(res[0], m) for _, m, _ in out):
            continue
        used.add((cat, side))
        out.append((cat, res[0], res[1]))
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether bool masks ``a`` and ``b`` share more than ``_MAX_OVERLAP`` of the smaller one."""
    return int((a & b).sum()) > _MAX_OVERLAP * min(int(a.sum()), int(b.sum()))


def _draw(rng: np.random.Generator, size: int, lesions: bool = True):
    """Renders one phantom; ``lesions=False`` gives the identical film without its lesions.

    The anatomy, lesion and noise streams use independent child generators, so the lesion-free
    render differs from the full one exactly on the union of the lesion masks.
    """
    seeds = rng.integers(0, 2**63 - 1, size=3)
    anat_rng, lesion_rng, noise_rng = (np.random.default_rng(int(s)) for s in seeds)
    chest = _chest_geometry(anat_rng, size)
    img = _render_anatomy(anat_rng, chest)
    found = _place_lesions(lesion_rng, chest)
    if lesions:
        for _, _, delta in found:
            img = img + delta
    instances = [{"category_id": c, "mask": m} for c, m, _ in found] if lesions else []
    return _finish(noise_rng, img), instances


def draw_phantom(rng: np.random.Generator, size: int = 512) -> tuple[np.ndarray, list[dict]]:
    """Draws one synthetic chest radiograph with 0-3 lesions.

    Args:
        rng: Source of randomness; the same generator state gives the same phantom.
        size: Side length ``S`` of the square image in pixels (designed for 512; >= 64).

    Returns:
        ``(image, instances)``: ``image`` is uint8 ``[S, S]`` grayscale (bright = dense);
        ``instances`` is a list of ``{"category_id": int, "mask": bool [S, S]}`` where
        ``category_id`` is a 0-based index into :data:`PHANTOM_CLASSES` and every mask is
        non-empty, one connected region, and exactly the pixels the lesion changed.

    Raises:
        ValueError: If ``size`` < 64.
    """
    if size < 64:
        raise ValueError(f"phantom size must be >= 64 px, got {size}")
    return _draw(rng, size, lesions=True)


def draw_normal_phantom(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Draws one synthetic chest radiograph without any lesion.

    It is the film :func:`draw_phantom` gives for the same generator state, with its lesions
    left out (``tools/make_phantom.py`` draws the lesions of a real annotation file on it).

    Returns:
        uint8 ``[S, S]`` grayscale image (bright = dense).

    Raises:
        ValueError: If ``size`` < 64.
    """
    if size < 64:
        raise ValueError(f"phantom size must be >= 64 px, got {size}")
    return _draw(rng, size, lesions=False)[0]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------


def _file_name(i: int) -> str:
    """Relative path (to the dataset root) of image ``i``."""
    return f"images/phantom_{i:05d}.png"


def _render_one(job: tuple[str, int, int, int]) -> list[dict]:
    """Pool worker: draws image ``i``, writes its PNG and returns its COCO annotations.

    Args:
        job: ``(root, i, size, seed)``; the image is drawn from ``default_rng([seed, i])``.

    Returns:
        Annotation dicts without ``id``/``image_id`` (``category_id`` is 1-based).
    """
    root, i, size, seed = job
    img, instances = draw_phantom(np.random.default_rng([seed, i]), size)
    if not cv2.imwrite(os.path.join(root, _file_name(i)), img):
        raise OSError(f"could not write {os.path.join(root, _file_name(i))}")
    anns = []
    for inst in instances:
        x1, y1, x2, y2 = mask_to_box(inst["mask"], source=_file_name(i))
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

    Large sets are split over 2 worker processes (:func:`_run_workers`); small ones, or
    machines with a single core, render in this process.
    """
    workers = min(_NUM_WORKERS, os.cpu_count() or 1)
    with tqdm(total=num_images, desc="Generating phantoms", unit="img") as bar:
        if workers > 1 and num_images >= _POOL_MIN_IMAGES and sys.executable:
            return _run_workers(root, num_images, size, seed, workers, bar)
        results = []
        for i in range(num_images):
            results.append(_render_one((root, i, size, seed)))
            bar.update()
        return results


def _run_workers(root: str, num_images: int, size: int, seed: int, workers: int, bar):
    """Renders with ``workers`` fresh interpreters running this file (see :func:`_worker_main`).

    Fresh processes rather than a fork-based ``multiprocessing.Pool``: OpenCV's thread pool is
    not fork-safe (a forked child of a process that already used OpenCV can hang), and a
    spawn-based pool would re-import the caller's ``__main__`` and the whole ``cxr_d2`` package.
    Running this file by path imports only numpy, OpenCV, pycocotools and tqdm.

    Returns:
        Per-image annotation lists, in image order.

    Raises:
        RuntimeError: If a worker exits with an error (its traceback is on stderr).
    """
    code = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
    args = [root, str(num_images), str(size), str(seed), str(workers)]
    lines: queue.Queue = queue.Queue()
    procs, results, finished = [], [None] * num_images, 0
    try:
        for k in range(workers):
            cmd = [sys.executable, "-c", code, os.path.abspath(__file__), *args, str(k)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
            threading.Thread(target=_pump, args=(procs[-1].stdout, lines), daemon=True).start()
        while finished < workers:  # each worker: one tagged json line per image, then None
            line = lines.get()
            if line is None:
                finished += 1
            elif line.startswith(_TAG):
                record = json.loads(line[len(_TAG) :])
                results[record["i"]] = record["anns"]
                bar.update()
        for proc in procs:
            proc.wait()
    finally:
        for proc in procs:  # only still running if interrupted
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if any(proc.returncode for proc in procs) or any(r is None for r in results):
        raise RuntimeError("a phantom generation worker failed; see its traceback above")
    return results


def _pump(stream, lines: queue.Queue) -> None:
    """Copies the lines of a worker's stdout into ``lines``, then puts ``None``."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def _worker_main(argv: list[str]) -> None:
    """Worker entry point: renders images ``k, k + n, ...`` and prints one json line each.

    Args:
        argv: ``[root, num_images, size, seed, n, k]`` as strings.
    """
    root, (num_images, size, seed, n, k) = argv[0], (int(v) for v in argv[1:])
    cv2.setNumThreads(1)  # one core per worker
    for i in range(k, num_images, n):
        anns = _render_one((root, i, size, seed))
        print(_TAG + json.dumps({"i": i, "anns": anns}), flush=True)


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


if __name__ == "__main__":  # worker process of _run_workers
    _worker_main(sys.argv[2:])
