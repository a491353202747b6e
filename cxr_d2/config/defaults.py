from detectron2.config import CfgNode as CN

from .adelaidet import add_adelaidet_config
from .blendmask import add_blendmask_config
from .fcos import add_fcos_config
from .num_classes import NUM_CLASSES_KEYS, parent_node
from .schedule import add_schedule_config
from .solov2 import add_solov2_config
from .ssd_yolo import add_ssd_config, add_yolov3_config
from .tta import add_tta_config

__all__ = ["add_cxr_config"]


def add_cxr_config(cfg):
    """
    Add the cxr-d2 options to a Detectron2 config. Call it on `get_cfg()` before merging a
    config file, as with Detectron2's projects; it changes only `cfg`, never the global
    defaults.
    """
    # Every head's number of classes defaults to 0, meaning "take it from the training
    # dataset's metadata" (len(thing_classes)); a non-zero value must agree with the dataset.
    for key in NUM_CLASSES_KEYS:
        node, leaf = parent_node(cfg, key)
        if node is not None:
            setattr(node, leaf, 0)

    cfg.CXR = CN()
    # Write OUTPUT_DIR/split_manifest.json (which image of which dataset the run used; the
    # only file a run writes about its data, named by each evaluation.json).
    cfg.CXR.WRITE_MANIFEST = True
    # Task types the evaluator scores: empty = "bbox", plus "segm" when MODEL.MASK_ON.
    cfg.CXR.EVAL_TASKS = []

    # What the data readers accept (cxr_d2/data/policy.py, docs/reliability.md).
    cfg.CXR.DATA = CN()
    # Refuse an image whose header states more pixels than this, before decoding it
    # (decompression bombs; a 30000x30000 DICOM would need GiBs). The largest CXRs are ~15 Mpx.
    cfg.CXR.DATA.MAX_IMAGE_PIXELS = 100_000_000
    # Let an annotation's file_name name a file outside its dataset's folder (absolute or
    # with ../); off, such an image is reported and skipped.
    cfg.CXR.DATA.ALLOW_FILES_OUTSIDE_ROOT = False
    # Decoded images cached as .npy (cxr_d2/data/image_cache.py): filled on first use (or by
    # tools/cache_images.py), keyed by the file's content and the decoding settings.
    cfg.CXR.DATA.IMAGE_CACHE = CN()
    cfg.CXR.DATA.IMAGE_CACHE.ENABLED = False
    # The cache folder; "" = $CXR_DATASETS/.cache (./datasets/.cache).
    cfg.CXR.DATA.IMAGE_CACHE.DIR = ""
    # Shrink cached images so the longer side is at most this (annotations scaled to match,
    # predictions still in the original pixels); 0 = keep the native size.
    cfg.CXR.DATA.IMAGE_CACHE.MAX_SIZE = 0

    # Refuse to start a run whose OUTPUT_DIR has less free disk space than this (MB): a
    # checkpoint of a ResNet-50 model with its optimizer state is ~0.5 GB. 0 = no check.
    cfg.CXR.MIN_FREE_DISK_MB = 100

    # Watch the training loss for divergence (cxr_d2/engine/divergence.py): a run diverges when
    # the median total_loss of the last WINDOW iterations exceeds FACTOR x the median of its
    # first WINDOW iterations. A NaN/inf loss always stops the run (Detectron2 cannot go on).
    cfg.CXR.DIVERGENCE = CN()
    # Watch at all (off: an exploding loss trains on silently, as in plain Detectron2).
    cfg.CXR.DIVERGENCE.ENABLED = True
    # Iterations in each median (the first check is after 2 x WINDOW iterations).
    cfg.CXR.DIVERGENCE.WINDOW = 20
    # Growth of the median loss (> 1) that counts as divergence.
    cfg.CXR.DIVERGENCE.FACTOR = 100.0
    # "stop": end the run with an error (no model_final is written from the diverged weights;
    # earlier checkpoints are kept). "warn": log one warning and keep training.
    cfg.CXR.DIVERGENCE.ACTION = "stop"

    # Evaluation (cxr_d2/evaluation, docs/evaluation.md).
    cfg.CXR.EVAL = CN()
    # COCO matching code: "auto" (hotcoco when installed, else faster_coco_eval, else
    # pycocotools), "hotcoco", "faster_coco_eval" or "pycocotools" (the reference; all give
    # the same numbers: tests/evaluation/test_backends.py).
    cfg.CXR.EVAL.BACKEND = "auto"
    # Detections per image (and class, as COCOeval) counted for AP and for `AR`, the paper's
    # "AR with 300 detections"; AR@1, AR@10 and AR@100 are reported as well.
    cfg.CXR.EVAL.MAX_DETS_PER_IMAGE = 300
    # Also score every model class-agnostically (every ground truth and prediction in one
    # category): tasks "bbox_agnostic" and "segm_agnostic" next to "bbox" and "segm".
    cfg.CXR.EVAL.AGNOSTIC = True
    # The model's name in evaluation.json and tools/report.py tables; "" = from the config
    # (META_ARCHITECTURE and backbone, e.g. "Faster R-CNN R-50-FPN").
    cfg.CXR.EVAL.MODEL_NAME = ""
    cfg.CXR.EVAL.FROC = CN()
    # Compute FROC (lesion sensitivity at FP_RATES false positives per image) for every task
    # and draw its curve to OUTPUT_DIR/inference/<dataset>/froc_<task>.png.
    cfg.CXR.EVAL.FROC.ENABLED = True
    # A detection hits a lesion of its class when their IoU (box or mask) is at least this.
    cfg.CXR.EVAL.FROC.IOU_THRESH = 0.5
    # False positives per image at which sensitivity is reported; their mean is `FROC`.
    cfg.CXR.EVAL.FROC.FP_RATES = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]

    # SSD512 (VGG16) and YOLOv3 (Darknet-53): MODEL.SSD, MODEL.VGG, INPUT.SSD_AUG,
    # MODEL.YOLOV3, MODEL.DARKNET (NUM_CLASSES 0 = from the dataset, as above).
    add_ssd_config(cfg)
    add_yolov3_config(cfg)
    add_fcos_config(cfg)
    add_solov2_config(cfg)  # MODEL.SOLOV2 (AdelaiDet's keys)
    add_blendmask_config(cfg)  # MODEL.BASIS_MODULE, MODEL.BLENDMASK (AdelaiDet's keys)
    add_adelaidet_config(cfg)  # AdelaiDet's other keys, so its full configs merge
    add_schedule_config(cfg)  # CXR.SOLVER: schedules in epochs of the training split
    add_tta_config(cfg)  # TEST.AUG.NMS_THRESH, TEST.ENSEMBLE (test-time augmentation, ensembles)
