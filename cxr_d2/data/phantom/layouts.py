"""
Phantom datasets in the real on-disk layouts of the sources (`tools/make_phantom.py`).

A plan (see :mod:`.plan`) is drawn at random (:func:`random_plan`) or read from a real
annotation file (:func:`plan_from_annotations`), so lesions land at the real boxes;
:func:`write_layout` then writes the source's files: annotation CSV/JSON/XML exactly as
published, PNG or DICOM images.

The layouts are the rows of the source table (`cxr_d2.data.datasets.SOURCES`) with a
`phantom_layout` (:class:`~.plan.PhantomLayout`, defined in the source's module): the
source's native image size, classes, file names, writer and annotation reader.
"""

import os

import numpy as np

from ...errors import DatasetError
from .. import datasets
from ..checks import ProblemLog
from .plan import Finding, Item, PlanBuilder

__all__ = [
    "LAYOUTS",
    "phantom_layout",
    "random_plan",
    "plan_from_annotations",
    "write_layout",
]


def _layouts():
    found = {}
    for name, source in datasets.SOURCES.items():
        if source.phantom_layout is not None:
            found[name] = source.phantom_layout
    return found


_LAYOUTS = _layouts()
LAYOUTS = tuple(_LAYOUTS)


def phantom_layout(name):
    """The :class:`~.plan.PhantomLayout` of source `name`; DatasetError if it has none."""
    if name not in _LAYOUTS:
        raise DatasetError(f"--layout {name}: unknown; choose one of {', '.join(LAYOUTS)}")
    return _LAYOUTS[name]


def _random_box(rng, size):
    """A box inside the lung region of a phantom of side `size` (XYXY_ABS)."""
    w, h = size * rng.uniform(0.08, 0.22), size * rng.uniform(0.08, 0.22)
    cx = size * (rng.choice([0.32, 0.68]) + rng.uniform(-0.07, 0.07))
    cy = size * rng.uniform(0.35, 0.62)
    return [
        float(np.floor(cx - w / 2)),
        float(np.floor(cy - h / 2)),
        float(np.ceil(cx + w / 2)),
        float(np.ceil(cy + h / 2)),
    ]


def random_plan(layout, num_images, size, seed=0, normal_fraction=0.2):
    """
    A random plan: `num_images` images of 1 to 3 findings (or none, for about
    `normal_fraction` of them, where the source has normal films), spread over the source's
    parts, with patients of 1 to 3 images where the source has patient ids.
    """
    spec = phantom_layout(layout)
    rng = np.random.default_rng(seed)
    items = []
    for i in range(num_images):
        normal = spec.normals and rng.random() < normal_fraction
        name, part = spec.image(i, num_images, normal, rng)
        findings = []
        for _ in range(0 if normal else int(rng.integers(1, 4))):
            box = _random_box(rng, size)
            findings.append(Finding(str(rng.choice(spec.classes)), box))
        items.append(Item(name, part, findings))
    return items


def plan_from_annotations(layout, path, size, native_size=None):
    """
    A plan from a real annotation file, its coordinates scaled from `native_size` (default:
    the source's published image size, its layout's `native_size`) to `size`. Read: nih_cxr14
    (BBox_List_2017.csv), chestx_det10 / chestx_det (their JSON lists; test*.json gives the
    test part), tbx11k (a TBX11K COCO json), vindr_cxr (Kaggle train.csv, every reader's
    row), rsna_pneumonia (stage_2_train_labels.csv), siim_ptx (train-rle.csv, masks resized
    to `size`).
    """
    spec = phantom_layout(layout)
    if spec.read_plan is None:
        raise DatasetError(
            f"--annotations is not read for {layout}; leave it out to draw at random"
        )
    plan = PlanBuilder(size, native_size or spec.native_size)
    log = ProblemLog(f"make_phantom --annotations {path}")
    spec.read_plan(path, plan, log)
    if log.problems:
        raise DatasetError(f"{path}: {len(log.problems)} unusable rows, first: {log.problems[0]}")
    return plan.items()


def write_layout(layout, out, items, size, seed=0, uml_masks="coco", annotations_file=None):
    """
    Write the plan `items` under `out/<layout>/` in that source's layout.

    Args:
        uml_masks (str): uml_peru: "coco" (annotations.json) or "png" (a PNG per instance).
        annotations_file (str or None): the real file the plan came from; copied verbatim
            over the written one when `size` is the source's native size (NIH).

    Returns:
        str: the source folder written.
    """
    spec = phantom_layout(layout)
    root = os.path.join(out, layout)
    os.makedirs(root, exist_ok=True)
    spec.write(root, items, size, seed, uml_masks=uml_masks, annotations_file=annotations_file)
    return root
