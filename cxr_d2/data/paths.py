"""Where datasets live: $CXR_DATASETS, default ./datasets, read once at import."""
import os

from ..errors import DatasetError

__all__ = ["DATASETS_ROOT", "require_dir"]

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
