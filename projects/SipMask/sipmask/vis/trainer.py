"""Data and evaluation of SipMaskVIS runs, found by cxr-d2's Trainer through its registry."""

import os

from detectron2.data import (
    DatasetCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)

from cxr_d2.engine.trainer import TRAINER_DATA, Trainer, require_images
from cxr_d2.errors import DatasetError

from .evaluator import VISEvaluator
from .mapper import VISPairMapper, VISSequenceMapper, key_frames

__all__ = ["VISTrainer"]


class VISTrainer(Trainer):
    """
    Trainer of SipMaskVIS: training draws key frames uniformly over the annotated frames of
    DATASETS.TRAIN's sequences and pairs each with a reference frame (:class:`VISPairMapper`);
    testing feeds one whole sequence per batch (:class:`VISSequenceMapper`) and scores the
    tracks with :class:`VISEvaluator`.
    """

    @classmethod
    def build_train_loader(cls, cfg):
        require_images(cfg, "TRAIN", cfg.DATASETS.TRAIN)
        items = [x for name in cfg.DATASETS.TRAIN for x in key_frames(DatasetCatalog.get(name))]
        if not items:
            raise DatasetError(
                f"DATASETS.TRAIN ({', '.join(cfg.DATASETS.TRAIN)}) has no frame with an "
                "annotated instance; SipMaskVIS trains on annotated sequences"
            )
        return build_detection_train_loader(cfg, mapper=VISPairMapper(cfg), dataset=items)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        require_images(cfg, "TEST", [dataset_name])
        return build_detection_test_loader(
            DatasetCatalog.get(dataset_name),
            mapper=VISSequenceMapper(cfg),
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return VISEvaluator(dataset_name, output_folder)


TRAINER_DATA["SipMaskVIS"] = VISTrainer
