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
from .chestx_det import CHESTX_DET_CLASSES, parse_chestx_det
from .chestx_det10 import CHESTX_DET10_CLASSES, parse_chestx_det10
from .common import Source, register_source
from .nih_cxr14 import NIH_CLASSES, parse_nih_cxr14
from .phantom import PHANTOM_CLASSES, PHANTOM_VARIANTS, parse_phantom
from .rsna_pneumonia import RSNA_CLASSES, parse_rsna_pneumonia
from .siim_ptx import SIIM_CLASSES, parse_siim_ptx
from .tbx11k import TBX11K_CLASSES, parse_tbx11k
from .uml_peru import UML_PAPER_CLASSES, parse_uml_peru
from .vindr_cxr import VINDR_KAGGLE_CLASSES, VINDR_VARIANTS, parse_vindr_cxr

__all__ = ["SOURCES", "register_all", "register_all_cxr"]

# The source table: one row per source, everything else in the source's module.
SOURCES = {
    s.name: s
    for s in (
        Source(
            "cxr_phantom",
            parse_phantom,
            tuple(PHANTOM_CLASSES),
            generated=True,
            variants=PHANTOM_VARIANTS,
        ),
        Source("nih_cxr14", parse_nih_cxr14, tuple(NIH_CLASSES), official_split=True),
        Source("chestx_det10", parse_chestx_det10, tuple(CHESTX_DET10_CLASSES), official_split=True),
        Source("tbx11k", parse_tbx11k, tuple(TBX11K_CLASSES), official_split=True),
        Source("uml_peru", parse_uml_peru, tuple(UML_PAPER_CLASSES)),
        Source(
            "vindr_cxr",
            parse_vindr_cxr,
            tuple(VINDR_KAGGLE_CLASSES),
            official_split=True,
            variants=VINDR_VARIANTS,
        ),
        Source("rsna_pneumonia", parse_rsna_pneumonia, tuple(RSNA_CLASSES)),
        Source("siim_ptx", parse_siim_ptx, tuple(SIIM_CLASSES)),
        Source("chestx_det", parse_chestx_det, tuple(CHESTX_DET_CLASSES), official_split=True),
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
    """Register the built-in datasets under $CXR_DATASETS (done on `import cxr_d2`)."""
    return register_all_cxr(DATASETS_ROOT)


register_all()
