"""The Trainer shared by the tools: Detectron2's DefaultTrainer with CXR evaluation."""
import logging
import os
import weakref

from detectron2.data import (
    DatasetCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.utils import comm

from ..data.mapper import CXRDatasetMapper
from ..data.splits import MANIFEST_FILE, write_manifest
from ..data.transforms import build_train_mapper
from ..errors import CXRError, DatasetError
from ..evaluation import build_coco_evaluator
from .checkpoint import AtomicCheckpointer
from .divergence import DivergenceHook, TrainingDiverged, divergence_message

__all__ = ["TRAINER_DATA", "Trainer", "write_run_manifest"]

logger = logging.getLogger(__name__)


class _NoTracebackForCXRErrors(logging.Filter):
    """Drops the training loop's "Exception during training:" traceback for a CXRError, whose
    one-line message the tool prints (`launch_tool`)."""

    def filter(self, record):
        return not (record.exc_info and isinstance(record.exc_info[1], CXRError))


# META_ARCHITECTURE name -> Trainer subclass, for models whose data are not single images
# (SipMaskVIS: frame pairs, sequences): Trainer defers build_train_loader, build_test_loader
# and build_evaluator to the subclass registered for the config's meta-architecture.
TRAINER_DATA = {}

_TRAIN_LOOP_LOGGER = logging.getLogger("detectron2.engine.train_loop")
_TRAIN_LOOP_LOGGER.addFilter(_NoTracebackForCXRErrors())


class Trainer(DefaultTrainer):
    """
    DefaultTrainer with: the COCO evaluator that needs no `detectron2._C`, atomic checkpoints,
    `OUTPUT_DIR/split_manifest.json` listing the images of every dataset of the run, and a
    divergence watch (CXR.DIVERGENCE) that ends an exploding or NaN run in one line.

    Each dataset is parsed once per process (`cxr_d2.data.datasets.common`): the train
    loader, the manifest, the test loader and the evaluator share that parse.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.CXR.WRITE_MANIFEST and comm.is_main_process():
            names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
            write_run_manifest(cfg, names)

    def build_hooks(self):
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before this call;
        # replace it before the checkpoint hooks capture it.
        self.checkpointer = AtomicCheckpointer(
            self.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        hook_list = super().build_hooks()
        if self.cfg.CXR.DIVERGENCE.ENABLED:
            # before the checkpointer: a stop at a checkpoint step saves no diverged weights
            at = next(
                (i for i, h in enumerate(hook_list) if isinstance(h, hooks.PeriodicCheckpointer)),
                len(hook_list),
            )
            hook_list.insert(at, DivergenceHook.from_config(self.cfg))
        return hook_list

    def run_step(self):
        """DefaultTrainer.run_step; a NaN/inf loss (Detectron2's FloatingPointError) is a
        TrainingDiverged naming the iteration and what to do."""
        try:
            super().run_step()
        except FloatingPointError:
            raise TrainingDiverged(
                divergence_message(self.cfg, self.iter, float("nan"), "(NaN or inf)")
            ) from None

    @classmethod
    def _data_trainer(cls, cfg):
        """The registered Trainer of this meta-architecture's data, or None."""
        return TRAINER_DATA.get(cfg.MODEL.META_ARCHITECTURE)

    @classmethod
    def build_train_loader(cls, cfg):
        """Detectron2's train loader with the mapper that also reads DICOM (SSD's
        photometric/expand/crop augmentation when INPUT.SSD_AUG.ENABLED)."""
        if cls is Trainer and cls._data_trainer(cfg):
            return cls._data_trainer(cfg).build_train_loader(cfg)
        require_images(cfg, "TRAIN", cfg.DATASETS.TRAIN)
        return build_detection_train_loader(cfg, mapper=build_train_mapper(cfg))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's test loader with the mapper that also reads DICOM."""
        if cls is Trainer and cls._data_trainer(cfg):
            return cls._data_trainer(cfg).build_test_loader(cfg, dataset_name)
        require_images(cfg, "TEST", [dataset_name])
        return build_detection_test_loader(
            cfg, dataset_name, mapper=CXRDatasetMapper(cfg, is_train=False)
        )

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test, with the test datasets added to the run's manifest first."""
        if cfg.CXR.WRITE_MANIFEST and comm.is_main_process():
            write_run_manifest(cfg, cfg.DATASETS.TEST, update=True)
        return super().test(cfg, model, evaluators)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if cls is Trainer and cls._data_trainer(cfg):
            return cls._data_trainer(cfg).build_evaluator(cfg, dataset_name, output_folder)
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_coco_evaluator(cfg, dataset_name, output_folder)


def require_images(cfg, key, names):
    """
    Raise DatasetError naming `DATASETS.<key>` and the dataset when a dataset of `names` has
    no image, or (training with DATALOADER.FILTER_EMPTY_ANNOTATIONS) none with a box, where
    Detectron2 would only assert "Dataset is empty" / "No valid data found".
    """
    annotated = 0
    for name in names:
        records = DatasetCatalog.get(name)
        if not records:
            raise DatasetError(
                f"DATASETS.{key} names {name}, which has no image (see the load summary above, "
                f"or run tools/check_dataset.py {name}); choose another dataset or split"
            )
        annotated += sum(1 for r in records if r.get("annotations"))
    if key == "TRAIN" and cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS and not annotated:
        raise DatasetError(
            f"DATASETS.TRAIN ({', '.join(names)}) has no image with an annotation, and "
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS True drops every image without one; train on "
            "a dataset with findings, or set it False"
        )


def write_run_manifest(cfg, names, update=False):
    """
    Write OUTPUT_DIR/split_manifest.json: the image files of each dataset in `names`, from
    the records the run loads. With `update`, the file's other datasets are kept.
    """
    path = os.path.join(cfg.OUTPUT_DIR, MANIFEST_FILE)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    names = list(dict.fromkeys(names))
    write_manifest(path, {name: DatasetCatalog.get(name) for name in names}, update=update)
    logger.info(f"Split manifest written to {path}")
