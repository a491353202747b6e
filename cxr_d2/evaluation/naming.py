"""Names of models and datasets in result files and tables, taken from a run's config."""

import re

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


def is_agnostic_dataset(name):
    """Datasets named `<source>_agnostic_<split>` hold one merged category."""
    return "_agnostic_" in name


def dataset_label(name):
    """The dataset a result is about: `<source>_agnostic_<split>` is `<source>_<split>`."""
    return name.replace("_agnostic_", "_")
