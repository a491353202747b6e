from .builtin import SOURCES, register_all, register_all_cxr
from .common import (
    AGNOSTIC_CLASS,
    Source,
    Variant,
    dataset_names,
    forget_loaded,
    register_source,
)
from .phantom import parse_phantom

__all__ = [
    "AGNOSTIC_CLASS",
    "SOURCES",
    "Source",
    "Variant",
    "dataset_names",
    "forget_loaded",
    "parse_phantom",
    "register_all",
    "register_all_cxr",
    "register_source",
]
