"""
Schedules in epochs of the training split: CXR.SOLVER.* turned into SOLVER.MAX_ITER, STEPS,
WARMUP_ITERS and CHECKPOINT_PERIOD once the training datasets' size is known (at setup).

One epoch is the images Detectron2's train loader draws from: every record of DATASETS.TRAIN,
or, with DATALOADER.FILTER_EMPTY_ANNOTATIONS, those with at least one non-crowd annotation
(Detectron2's `filter_images_with_only_crowd_annotations`). Iterations per epoch =
images / SOLVER.IMS_PER_BATCH (the batch over all GPUs), so the same config means the same
number of passes on NIH (~700 training films) and on TBX11K (~6700).
"""

import logging
import math

from detectron2.config import CfgNode as CN
from detectron2.data import DatasetCatalog

from ..errors import ConfigError

__all__ = ["add_schedule_config", "resolve_epochs", "training_images", "epochs_to_iters"]

logger = logging.getLogger(__name__)


def add_schedule_config(cfg):
    """Add CXR.SOLVER: the schedule in epochs (off by default: SOLVER.MAX_ITER rules)."""
    cfg.CXR.SOLVER = CN()
    # Training length in whole epochs of DATASETS.TRAIN; > 0 replaces SOLVER.MAX_ITER (and, when
    # given, STEPS, WARMUP_ITERS and CHECKPOINT_PERIOD by the keys below). 0 = off.
    cfg.CXR.SOLVER.EPOCHS = 0
    # Epochs at which the learning rate is multiplied by SOLVER.GAMMA (-> SOLVER.STEPS).
    cfg.CXR.SOLVER.STEP_EPOCHS = ()
    # Warm-up length in epochs (-> SOLVER.WARMUP_ITERS); 0 keeps SOLVER.WARMUP_ITERS.
    cfg.CXR.SOLVER.WARMUP_EPOCHS = 0
    # Epochs between checkpoints (-> SOLVER.CHECKPOINT_PERIOD): what a killed or preempted run
    # loses at most. 0 keeps SOLVER.CHECKPOINT_PERIOD.
    cfg.CXR.SOLVER.CHECKPOINT_EPOCHS = 0


def epochs_to_iters(epochs, images, ims_per_batch):
    """Iterations of `epochs` passes over `images` at `ims_per_batch` (halves up), at least 1."""
    return max(1, math.floor(epochs * images / ims_per_batch + 0.5))


def training_images(cfg):
    """The number of images one epoch of DATASETS.TRAIN draws from (see the module doc)."""
    total = 0
    for name in cfg.DATASETS.TRAIN:
        records = DatasetCatalog.get(name)
        if cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
            records = [
                r
                for r in records
                if any(a.get("iscrowd", 0) == 0 for a in r.get("annotations", []))
            ]
        total += len(records)
    return total


def resolve_epochs(cfg, images=None):
    """
    With CXR.SOLVER.EPOCHS > 0, set SOLVER.MAX_ITER, STEPS (from STEP_EPOCHS), WARMUP_ITERS
    and CHECKPOINT_PERIOD (when their epoch keys are > 0) for `images` training images
    (default: counted from DATASETS.TRAIN). `cfg` mutable. Returns `images` (None when off).
    """
    s = cfg.CXR.SOLVER
    if not s.EPOCHS:
        return None
    if s.EPOCHS < 0 or any(not 0 < e < s.EPOCHS for e in s.STEP_EPOCHS):
        raise ConfigError(
            f"CXR.SOLVER.EPOCHS {s.EPOCHS} / STEP_EPOCHS {tuple(s.STEP_EPOCHS)}: give EPOCHS > 0 "
            "and step epochs between 0 and EPOCHS (or EPOCHS 0 to use SOLVER.MAX_ITER)"
        )
    images = training_images(cfg) if images is None else images
    if images < 1:
        raise ConfigError(
            f"CXR.SOLVER.EPOCHS {s.EPOCHS}: DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)} has no "
            "training image to count epochs in"
        )

    def iters(epochs):
        return epochs_to_iters(epochs, images, cfg.SOLVER.IMS_PER_BATCH)

    cfg.SOLVER.MAX_ITER = iters(s.EPOCHS)
    cfg.SOLVER.STEPS = tuple(sorted({iters(e) for e in s.STEP_EPOCHS}))
    if s.WARMUP_EPOCHS > 0:
        cfg.SOLVER.WARMUP_ITERS = iters(s.WARMUP_EPOCHS)
    if s.CHECKPOINT_EPOCHS > 0:
        cfg.SOLVER.CHECKPOINT_PERIOD = iters(s.CHECKPOINT_EPOCHS)
    logger.info(
        f"CXR.SOLVER.EPOCHS {s.EPOCHS} of {images} training images at batch "
        f"{cfg.SOLVER.IMS_PER_BATCH}: SOLVER.MAX_ITER {cfg.SOLVER.MAX_ITER}, STEPS "
        f"{tuple(cfg.SOLVER.STEPS)}, WARMUP_ITERS {cfg.SOLVER.WARMUP_ITERS}, CHECKPOINT_PERIOD "
        f"{cfg.SOLVER.CHECKPOINT_PERIOD}"
    )
    return images
