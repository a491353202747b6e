"""Augmentations beyond Detectron2's (SSD's) and the mappers that use them."""

from .ssd_augmentation import (
    MinIoURandomCrop,
    RandomExpand,
    RandomPhotometricDistort,
    build_ssd_augmentation,
)
from .ssd_mapper import SSDDatasetMapper, build_train_mapper

__all__ = [
    "MinIoURandomCrop",
    "RandomExpand",
    "RandomPhotometricDistort",
    "build_ssd_augmentation",
    "SSDDatasetMapper",
    "build_train_mapper",
]
