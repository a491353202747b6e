"""
Where datasets live: $CXR_DATASETS, default ./datasets, read once at import; and the one
check that a file named by an annotation file stays inside its dataset's folder.
"""

import functools
import os

from ..errors import DatasetError
from .policy import data_policy

__all__ = ["DATASETS_ROOT", "require_dir", "resolve_in_root"]

_ENV = "CXR_DATASETS"
DATASETS_ROOT = os.path.expanduser(os.getenv(_ENV, "datasets"))


def require_dir(path, what):
    """Raise DatasetError naming `path` and $CXR_DATASETS unless `path` is a folder."""
    if not os.path.isdir(path):
        raise DatasetError(
            f"{what}: folder {os.path.abspath(path)} does not exist; put the dataset there or "
            f"point ${_ENV} (now {os.getenv(_ENV, 'unset, so ./datasets')}) at its parent folder"
        )
    return path


@functools.lru_cache(maxsize=64)
def _real_root(root):
    # A dataset folder is resolved once per process: its files are many, the folder one.
    return os.path.realpath(root)


def resolve_in_root(root, name):
    """
    `os.path.join(root, name)` for a file name read from an annotation file, after checking,
    without opening it, that it stays inside `root` once every symlink is followed.

    `root` may itself be a symlink. A name that is absolute, climbs out with `..`, or passes
    through a symlink leading elsewhere raises DatasetError (one line naming `name`) unless
    `data_policy().allow_outside_root` (config `CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT`) is set.

    Returns:
        str: the joined path (not the resolved one), so records keep the names users see.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DatasetError(f"file name {name!r} is not a usable path")
    path = os.path.join(root, name)
    if data_policy().allow_outside_root:
        return path
    real_root, real = _real_root(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise DatasetError(
            f"file name {name!r} leads to {real}, outside the dataset folder {real_root}; "
            "the file is not read (set CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT True to allow it)"
        )
    return path
