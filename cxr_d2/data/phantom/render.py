"""
One phantom film: anatomy, then lesions, then tone curve and noise, each from its own stream.
"""

from __future__ import annotations

import numpy as np

from .anatomy import chest_geometry, finish, render_anatomy
from .lesions import place_lesions

__all__ = ["draw_phantom", "draw_normal_phantom"]


def _draw(rng: np.random.Generator, size: int, lesions: bool = True):
    """Renders one phantom; ``lesions=False`` gives the identical film without its lesions.

    The anatomy, lesion and noise streams use independent child generators, so the lesion-free
    render differs from the full one exactly on the union of the lesion masks.
    """
    seeds = rng.integers(0, 2**63 - 1, size=3)
    anat_rng, lesion_rng, noise_rng = (np.random.default_rng(int(s)) for s in seeds)
    chest = chest_geometry(anat_rng, size)
    img = render_anatomy(anat_rng, chest)
    found = place_lesions(lesion_rng, chest)
    if lesions:
        for _, _, delta in found:
            img = img + delta
    instances = [{"category_id": c, "mask": m} for c, m, _ in found] if lesions else []
    return finish(noise_rng, img), instances


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
