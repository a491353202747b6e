"""The CXR mapper giving the augmentations the boxes (SSD's min-IoU crop needs them)."""

import numpy as np
from detectron2.config import configurable
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from ..mapper import CXRDatasetMapper
from .ssd_augmentation import build_ssd_augmentation

__all__ = ["SSDDatasetMapper", "build_train_mapper"]


def _boxes_xyxy(dataset_dict):
    """(B, 4) float32 XYXY_ABS boxes of the record's non-crowd annotations."""
    annos = [a for a in dataset_dict.get("annotations", []) if a.get("iscrowd", 0) == 0]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


class SSDDatasetMapper(CXRDatasetMapper):
    """CXRDatasetMapper (PNG/JPEG/DICOM, unreadable images reported and skipped in training)
    with SSD's augmentations (`build_ssd_augmentation`), which see the boxes through
    `AugInput(image, boxes=...)`."""

    @configurable
    def __init__(self, is_train=True, **kwargs):
        super().__init__(is_train, **kwargs)

    @classmethod
    def from_config(cls, cfg, is_train=True):
        ret = super().from_config(cfg, is_train)
        ret["augmentations"] = build_ssd_augmentation(cfg, is_train)
        return ret

    def _aug_input(self, image, dataset_dict):
        return T.AugInput(image, boxes=_boxes_xyxy(dataset_dict))


def build_train_mapper(cfg):
    """The training mapper of a config: SSDDatasetMapper when INPUT.SSD_AUG.ENABLED, else
    CXRDatasetMapper."""
    if cfg.INPUT.get("SSD_AUG") is not None and cfg.INPUT.SSD_AUG.ENABLED:
        return SSDDatasetMapper(cfg, is_train=True)
    return CXRDatasetMapper(cfg, is_train=True)
