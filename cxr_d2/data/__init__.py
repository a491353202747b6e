from . import datasets  # noqa: F401 (registers the datasets)
from .checks import check_dataset, collect_problems
from .dicom import read_dicom, read_image
from .mapper import CXRDatasetMapper
from .paths import DATASETS_ROOT
from .splits import select_split, split_by_group, write_manifest

__all__ = [
    "DATASETS_ROOT",
    "CXRDatasetMapper",
    "check_dataset",
    "collect_problems",
    "read_dicom",
    "read_image",
    "select_split",
    "split_by_group",
    "write_manifest",
]
