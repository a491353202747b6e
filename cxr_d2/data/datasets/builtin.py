"""
Registers every built-in dataset on `import cxr_d2`, lazily (see Detectron2's builtin.py):
`DatasetCatalog` gets a function that parses the source's files when the dataset is used,
`MetadataCatalog` gets the classes, evaluator type, image root and split at once, from the
table below alone: registering reads no file.

Sources live under $CXR_DATASETS (default ./datasets), read once at import; a missing folder
is an error only when the dataset is used. The dataset name says everything else (variant,
split scheme, agnostic, split): see `common.py` and datasets/README.md.
"""

from ..paths import DATASETS_ROOT
from . import (
    chestx_det,
    chestx_det10,
    nih_cxr14,
    phantom,
    rsna_pneumonia,
    siim_ptx,
    tbx11k,
    uml_peru,
    vindr_cxr,
)
from .common import register_source
from .youtube_vis import register_builtin_youtube_vis

__all__ = ["SOURCES", "register_all", "register_all_cxr"]

# The source table: one row per source, each defined in the source's own module.
SOURCES = {
    s.SOURCE.name: s.SOURCE
    for s in (
        phantom,
        nih_cxr14,
        chestx_det10,
        tbx11k,
        uml_peru,
        vindr_cxr,
        rsna_pneumonia,
        siim_ptx,
        chestx_det,
    )
}


def register_all_cxr(root, prefix="", sources=None, replace=False):
    """
    Register every dataset of the table's sources (or of the names in `sources`) under the
    datasets root `root`; `prefix` lets tests register a second copy, `replace` re-registers
    names that exist (e.g. the built-in ones under another root).

    Returns:
        list[str]: the names registered.
    """
    names = []
    for source in SOURCES.values():
        if sources is None or source.name in sources:
            names += register_source(source, root, prefix=prefix, replace=replace)
    return names


def register_all():
    """Register the built-in datasets under $CXR_DATASETS (done on `import cxr_d2`), the
    YouTube-VIS sequence sets included."""
    register_builtin_youtube_vis(DATASETS_ROOT)
    return register_all_cxr(DATASETS_ROOT)


register_all()
