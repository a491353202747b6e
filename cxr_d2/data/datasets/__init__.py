from .builtin import SOURCES, register_all, register_all_cxr
from .common import register_source
from .phantom import load_phantom, register_phantom

__all__ = [
    "SOURCES",
    "register_all",
    "register_all_cxr",
    "register_source",
    "load_phantom",
    "register_phantom",
]
