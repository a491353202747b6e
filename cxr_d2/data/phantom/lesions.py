"""
The four lesion classes of the phantom (:data:`PHANTOM_CLASSES`) and their placement.

Each lesion function draws one lesion in one lung (``side`` 0 = image left, 1 = image right)
of a :class:`~.anatomy.Chest` and returns ``(mask bool [S, S], delta float32 [S, S])`` with
``delta`` nonzero exactly on the mask, or None when the sampled placement is unusable. Lesions
are added to the anatomy after its blur, so every mask is exactly the pixels its lesion changed.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..masks import mask_to_box
from .anatomy import Chest

__all__ = ["PHANTOM_CLASSES", "place_lesions"]

PHANTOM_CLASSES = ["Airspace Consolidation", "Cavitation", "Lymphadenopathy", "Pleural Effusion"]

_NORMAL_FRACTION = 0.15  # probability that a film has no lesion
_NUM_LESIONS_P = (0.5, 0.33, 0.17)  # probabilities of 1, 2, 3 lesions on an abnormal film
_MAX_OVERLAP = 0.15  # max overlap of two lesions, as a fraction of the smaller one's area


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


def _consolidation(rng: np.random.Generator, chest: Chest, side: int):
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


def _cavitation(rng: np.random.Generator, chest: Chest, side: int):
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


def _lymphadenopathy(rng: np.random.Generator, chest: Chest, side: int):
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
    x1, y1, x2, y2 = (int(v) for v in mask_to_box(mask, "lymphadenopathy"))
    win = (slice(max(y1 - 1, 0), y2 + 1), slice(max(x1 - 1, 0), x2 + 1))
    depth = cv2.distanceTransform(mask[win].astype(np.uint8), cv2.DIST_L2, 3)
    delta = np.zeros((S, S), np.float32)
    core = np.clip(depth / (0.6 * float(np.mean(radii))), 0.0, 1.0)
    delta[win] = rng.uniform(0.18, 0.26) * (0.7 + 0.3 * core) * mask[win]
    return mask, delta


def _effusion(rng: np.random.Generator, chest: Chest, side: int):
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


def place_lesions(rng: np.random.Generator, chest: Chest) -> list[tuple]:
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
