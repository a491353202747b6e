from . import datasets  # noqa: F401 (registers the datasets)
from .paths import DATASETS_ROOT
from .splits import split_by_group, write_manifest

__all__ = ["DATASETS_ROOT", "split_by_group", "write_manifest"]
