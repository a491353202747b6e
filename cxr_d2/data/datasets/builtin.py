"""
Registers every built-in dataset on `import cxr_d2`, lazily (see Detectron2's builtin.py):
`DatasetCatalog` gets a function that parses the source's files when the dataset is used,
`MetadataCatalog` gets the classes, evaluator type, image root and split options at once.

Sources live under $CXR_DATASETS (default ./datasets); a missing folder is an error only when
the dataset is used. The split options come from $CXR_SPLIT ("random" | "official") and
$CXR_SPLIT_SEED (int), read here, at registration (see `cxr_d2/data/splits.py`).
"""

import os

from ..paths import DATASETS_ROOT
from .chestx_det import CHESTX_DET_CLASSES, parse_chestx_det
from .chestx_det10 import CHESTX_DET10_CLASSES, parse_chestx_det10
from .common import register_source
from .nih_cxr14 import NIH_CLASSES, parse_nih_cxr14
from .phantom import register_phantom
from .rsna_pneumonia import RSNA_CLASSES, parse_rsna_pneumonia
from .siim_ptx import SIIM_CLASSES, parse_siim_ptx
from .tbx11k import TBX11K_CLASSES, parse_tbx11k
from .uml_peru import parse_uml_peru, uml_classes
from .vindr_cxr import parse_vindr_cxr, vindr_box_mode, vindr_classes

__all__ = ["register_all", "register_all_cxr", "SOURCES"]

# source -> (parse function, classes or a function of the source root giving them)
SOURCES = {
    "nih_cxr14": (parse_nih_cxr14, NIH_CLASSES),
    "chestx_det10": (parse_chestx_det10, CHESTX_DET10_CLASSES),
    "tbx11k": (parse_tbx11k, TBX11K_CLASSES),
    "uml_peru": (parse_uml_peru, uml_classes),
    "vindr_cxr": (parse_vindr_cxr, vindr_classes),
    "rsna_pneumonia": (parse_rsna_pneumonia, RSNA_CLASSES),
    "siim_ptx": (parse_siim_ptx, SIIM_CLASSES),
    "chestx_det": (parse_chestx_det, CHESTX_DET_CLASSES),
}


def register_all_cxr(root, prefix=""):
    """
    Register `<prefix><source>_{split}` and `<prefix><source>_agnostic_{split}` of every real
    source found (or not yet) under `root`; `prefix` lets tests register a second copy.
    """
    for source, (parse, classes) in SOURCES.items():
        source_root = os.path.join(root, source)
        extra = {}
        if source == "vindr_cxr":
            mode = vindr_box_mode()
            extra["box_mode"] = mode
            parse = _with_box_mode(mode)
        register_source(
            source,
            parse,
            source_root,
            classes(source_root) if callable(classes) else classes,
            prefix=prefix,
            **extra,
        )


def _with_box_mode(mode):
    def parse(root, classes, log):
        return parse_vindr_cxr(root, classes, log, box_mode=mode)

    return parse


def register_all():
    # The phantom's size can be changed for quick experiments and tests; the cache in
    # $CXR_DATASETS/cxr_phantom is regenerated whenever these differ from what it holds.
    register_phantom(
        "cxr_phantom",
        num_images=int(os.getenv("CXR_PHANTOM_IMAGES", "600")),
        size=int(os.getenv("CXR_PHANTOM_SIZE", "512")),
    )
    register_all_cxr(DATASETS_ROOT)


register_all()
