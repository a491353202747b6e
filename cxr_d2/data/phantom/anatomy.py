"""
Anatomy of a phantom chest radiograph: the sampled geometry (:class:`Chest`), the lesion-free
intensity image built from it (:func:`render_anatomy`) and the final tone curve and noise
(:func:`finish`).

A frontal (PA) film drawn from simple parametric anatomy: body, lung fields, ribs, clavicles,
mediastinum, spine, heart, diaphragm domes, vessel markings. Conventions:

* Images are float32 (linear intensity, bright = dense) or uint8 arrays of shape ``[S, S]``.
* Pixel coordinates are ``(x, y)`` = (column, row), origin at the top-left pixel corner.
* Radiological convention: the patient's right is shown on the image left, so the heart sits
  right of the image centre, over the image-right (patient-left) lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Chest", "chest_geometry", "render_anatomy", "finish"]


@dataclass
class Chest:
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


def chest_geometry(rng: np.random.Generator, size: int) -> Chest:
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
    return Chest(
        size, xs[None, :], ys, mid, med_half, lungs, lung_soft, dome, [top, top], bottoms, air
    )


def _body_layer(rng: np.random.Generator, chest: Chest) -> np.ndarray:
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


def _airway_layer(rng: np.random.Generator, chest: Chest, heart: np.ndarray) -> np.ndarray:
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


def _bone_layer(rng: np.random.Generator, chest: Chest) -> np.ndarray:
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


def _center_layer(rng: np.random.Generator, chest: Chest) -> tuple[np.ndarray, np.ndarray]:
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


def _vessel_layer(rng: np.random.Generator, chest: Chest) -> np.ndarray:
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


def render_anatomy(rng: np.random.Generator, chest: Chest) -> np.ndarray:
    """Lesion-free, slightly blurred linear intensity image, float32 ``[S, S]``."""
    center, heart = _center_layer(rng, chest)
    img = _body_layer(rng, chest) + _airway_layer(rng, chest, heart) + _bone_layer(rng, chest)
    img += center + _vessel_layer(rng, chest)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), chest.scale * rng.uniform(0.6, 1.1))


def finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
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
