"""Names of models and datasets in result files and tables, taken from a run's config."""

import re

from detectron2.data import MetadataCatalog

__all__ = ["model_name", "is_agnostic_dataset", "dataset_label"]

_FAMILIES = {"RetinaNet": "RetinaNet", "FCOS": "FCOS"}


def _backbone_name(cfg):
    backbone = cfg.MODEL.BACKBONE.NAME
    if "resnet" in backbone.lower() and "RESNETS" in cfg.MODEL:
        depth = cfg.MODEL.RESNETS.DEPTH
        groups = cfg.MODEL.RESNETS.NUM_GROUPS
        if groups > 1:
            name = f"X-{depth}-{groups}x{cfg.MODEL.RESNETS.WIDTH_PER_GROUP}d"
        else:
            name = f"R-{depth}"
        return name + ("-FPN" if "fpn" in backbone.lower() else "")
    return re.sub(r"^build_|_backbone$", "", backbone)


def model_name(cfg):
    """
    The model's name in tables: CXR.EVAL.MODEL_NAME when set, else the family from
    META_ARCHITECTURE (GeneralizedRCNN is Faster R-CNN, or Mask R-CNN with MASK_ON) and the
    backbone (R-50-FPN, X-101-32x8d-FPN, ...), e.g. "Faster R-CNN R-50-FPN".
    """
    explicit = cfg.CXR.EVAL.MODEL_NAME if "EVAL" in cfg.CXR else ""
    if explicit:
        return explicit
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "GeneralizedRCNN":
        family = "Mask R-CNN" if cfg.MODEL.MASK_ON else "Faster R-CNN"
    else:
        family = _FAMILIES.get(arch, arch)
    return f"{family} {_backbone_name(cfg)}"


def _metadata(name):
    return MetadataCatalog.get(name) if name in MetadataCatalog.list() else None


def is_agnostic_dataset(name):
    """Whether registered dataset `name` holds one merged category (metadata `agnostic`)."""
    meta = _metadata(name)
    return bool(meta is not None and meta.get("agnostic", False))


def dataset_label(name):
    """
    The dataset a result is about: an agnostic dataset's `specific_dataset` (the same
    images with their classes), else `name`.
    """
    meta = _metadata(name)
    return meta.get("specific_dataset", name) if meta is not None else name
