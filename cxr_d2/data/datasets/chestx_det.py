"""
ChestX-Det (the 13-class successor of ChestX-Det10, with instance polygons):
`chestx_det_{train,val,test}`.

Layout under `$CXR_DATASETS/chestx_det/`::

    ChestX_Det_train.json, ChestX_Det_test.json
        JSON list of {"file_name", "syms": [class...], "boxes": [[x1, y1, x2, y2]...],
        "polygons": [[[x, y], ...] per finding]}
    train/*.png, test/*.png

Each finding's polygon becomes its `segmentation` (a second public source of instance masks);
the published box is kept as the box. A finding whose polygon is unusable is reported and
skipped (a mask model cannot train on a box without a mask).
"""

from ..phantom.plan import PhantomLayout
from .chestx_det10 import (
    det_phantom_image,
    parse_det_json_list,
    read_det_phantom_plan,
    write_det_phantom,
)
from .common import Source

__all__ = ["SOURCE", "CHESTX_DET_CLASSES", "PHANTOM_LAYOUT", "parse_chestx_det"]

CHESTX_DET_CLASSES = [
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Consolidation",
    "Diffuse Nodule",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Fracture",
    "Mass",
    "Nodule",
    "Pleural Thickening",
    "Pneumothorax",
]
PARTS = (("ChestX_Det_train.json", "train", "trainval"), ("ChestX_Det_test.json", "test", "test"))


def parse_chestx_det(root, classes, log):
    return parse_det_json_list(root, classes, log, PARTS, with_polygons=True)


def _write_phantom(root, items, size, seed, **_):
    write_det_phantom(root, items, size, seed, PARTS, polygons=True)


# Phantom layout (tools/make_phantom.py): as ChestX-Det10's, with polygons.
PHANTOM_LAYOUT = PhantomLayout(
    1024, CHESTX_DET_CLASSES, det_phantom_image, _write_phantom, read_det_phantom_plan
)


# The source's row of the source table (builtin.SOURCES).
SOURCE = Source(
    "chestx_det",
    parse_chestx_det,
    tuple(CHESTX_DET_CLASSES),
    official_split=True,
    phantom_layout=PHANTOM_LAYOUT,
)
