"""
Phantom sequences: seeded series of radiographs of one phantom patient, for video instance
segmentation (SipMask-VIS). Within a sequence the anatomy and the lesions are one patient's;
from frame to frame the whole film moves with breathing and positioning, each lesion grows or
shrinks about its centre, and a lesion may appear late or resolve early. Every lesion keeps
one identity (the YouTube-VIS track `id`) for the whole sequence.

:func:`generate_phantom_sequences` writes ``root/frames/seq_NNNNN/frame_TT.png`` and
``root/sequences.json`` in the YouTube-VIS format (compressed-RLE segmentations, null where a
lesion is absent from a frame; ``info`` holds the generation parameters, the cache key).
Conventions as the phantom: uint8 ``[S, S]`` frames, bright = dense, masks exactly the pixels
a lesion changed.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from .anatomy import chest_geometry, finish, render_anatomy
from .lesions import PHANTOM_CLASSES, place_lesions

__all__ = ["SEQUENCE_GENERATOR_VERSION", "generate_phantom_sequences", "draw_sequence"]

#: Bumped whenever the rendered frames or annotations change; part of the cache key.
SEQUENCE_GENERATOR_VERSION = 1
_BREATH_PX = 0.02  # breathing amplitude, as a fraction of the film side (vertical)
_JITTER_PX = 0.01  # positioning jitter per frame, fraction of the side (both axes)
_SCALE_RANGE = (0.7, 1.3)  # lesion size at the end of a sequence relative to its start
_LATE_OR_EARLY_P = 0.3  # chance that a lesion appears late, and (separately) resolves early


def _warp(image, matrix, size, nearest):
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (size, size), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT if nearest else cv2.BORDER_REPLICATE)


def _scale_about(mask, scale):
    """The 2x3 affine that scales about the centroid of bool ``mask``."""
    ys, xs = np.nonzero(mask)
    return cv2.getRotationMatrix2D((float(xs.mean()), float(ys.mean())), 0.0, float(scale))


def _lifetimes(rng, count, length):
    """[first frame, end frame) of each lesion: present from the start to the end unless it
    appears late or resolves early; always at least two frames."""
    out = []
    for _ in range(count):
        start = int(rng.integers(1, length - 1)) if rng.random() < _LATE_OR_EARLY_P else 0
        end = length
        if rng.random() < _LATE_OR_EARLY_P and length - start > 2:
            end = int(rng.integers(start + 2, length))
        out.append((start, end))
    return out


def _lesion_at(mask, delta, scale, size):
    """One lesion scaled about its centre: (mask, delta) with delta nonzero exactly on mask."""
    matrix = _scale_about(mask, scale)
    warped_mask = _warp(mask.astype(np.uint8), matrix, size, nearest=True).astype(bool)
    warped_delta = _warp(delta, matrix, size, nearest=False) * warped_mask
    return warped_mask & (warped_delta != 0), warped_delta


def draw_sequence(rng: np.random.Generator, size: int, length: int, lesions: bool = True):
    """
    One phantom patient's series of ``length`` films; ``lesions=False`` gives the identical
    films without their lesions (same motion and noise), so the two differ only on the masks.

    Returns:
        (frames, tracks): ``frames`` a list of uint8 ``[S, S]``; ``tracks`` a list of
        ``{"category_id": 0-based index into PHANTOM_CLASSES, "masks": [bool [S, S] or None per
        frame]}``, at least one track, each present in at least one frame.
    """
    seeds = rng.integers(0, 2**63 - 1, size=4)
    anat_rng, lesion_rng, motion_rng, noise_rng = (np.random.default_rng(int(s)) for s in seeds)
    chest = chest_geometry(anat_rng, size)
    anatomy = render_anatomy(anat_rng, chest)
    found = []
    while not found:
        found = place_lesions(lesion_rng, chest)
    lives = _lifetimes(motion_rng, len(found), length)
    growth = motion_rng.uniform(*_SCALE_RANGE, size=len(found))
    phase = motion_rng.uniform(0, 2 * np.pi)
    frames, tracks = [], [{"category_id": c, "masks": []} for c, _, _ in found]
    for t in range(length):
        img = anatomy.copy()
        masks = []
        for (_, mask, delta), (start, end), g in zip(found, lives, growth):
            if not start <= t < end:
                masks.append(None)
                continue
            m, d = _lesion_at(mask, delta, 1.0 + (g - 1.0) * t / max(length - 1, 1), size)
            img = img + d if lesions else img
            masks.append(m)
        dy = _BREATH_PX * size * np.sin(phase + 2 * np.pi * t / 4.0)
        dx, jy = motion_rng.normal(0.0, _JITTER_PX * size, size=2)
        shift = np.float32([[1, 0, round(dx)], [0, 1, round(dy + jy)]])
        frames.append(finish(noise_rng, _warp(img, shift, size, nearest=False)))
        for track, m in zip(tracks, masks):
            moved = None if m is None else _warp(m.astype(np.uint8), shift, size, True) > 0
            track["masks"].append(moved if moved is not None and moved.any() else None)
    return frames, [tr for tr in tracks if any(m is not None for m in tr["masks"])]


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _is_cached(root, json_path, info):
    try:
        with open(json_path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if data.get("info") != info:
        return False
    return all(
        os.path.isfile(os.path.join(root, "frames", name))
        for v in data["videos"]
        for name in v["file_names"]
    )


def generate_phantom_sequences(root, num_sequences=24, length=6, size=256, seed=0):
    """
    Write (or reuse) a YouTube-VIS phantom sequence set under ``root``.

    Sequence ``i`` is drawn from ``np.random.default_rng([seed, i])``. If ``sequences.json``
    records the same parameters and every frame exists, nothing is drawn. The json is written
    to a temporary file and renamed, so an interrupted run leaves no complete-looking json.

    Returns:
        (json path, image root): the YouTube-VIS json and the folder its file names are
        relative to.
    """
    json_path = os.path.join(root, "sequences.json")
    image_root = os.path.join(root, "frames")
    info = {"num_sequences": num_sequences, "length": length, "size": size, "seed": seed,
            "generator_version": SEQUENCE_GENERATOR_VERSION}
    if _is_cached(root, json_path, info):
        return json_path, image_root
    videos, annotations = [], []
    for i in tqdm(range(num_sequences), desc="Generating phantom sequences", unit="seq"):
        frames, tracks = draw_sequence(np.random.default_rng([seed, i]), size, length)
        folder = f"seq_{i:05d}"
        os.makedirs(os.path.join(image_root, folder), exist_ok=True)
        names = [f"{folder}/frame_{t:02d}.png" for t in range(length)]
        for name, frame in zip(names, frames):
            if not cv2.imwrite(os.path.join(image_root, name), frame):
                raise OSError(f"could not write {os.path.join(image_root, name)}")
        videos.append({"id": i + 1, "file_names": names, "height": size, "width": size,
                       "length": length})
        for tr in tracks:
            annotations.append({
                "id": len(annotations) + 1,
                "video_id": i + 1,
                "category_id": tr["category_id"] + 1,
                "iscrowd": 0,
                "segmentations": [None if m is None else _rle(m) for m in tr["masks"]],
            })
    data = {
        "info": info,
        "videos": videos,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(PHANTOM_CLASSES)],
        "annotations": annotations,
    }
    tmp = f"{json_path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, json_path)
    return json_path, image_root
