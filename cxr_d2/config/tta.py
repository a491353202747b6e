"""Config keys of test-time augmentation (beyond Detectron2's TEST.AUG) and of ensembles."""

from detectron2.config import CfgNode as CN

__all__ = ["add_tta_config"]


def add_tta_config(cfg):
    """
    Add TEST.AUG.NMS_THRESH and TEST.ENSEMBLE to `cfg`. Detectron2's own TEST.AUG keys
    (ENABLED, MIN_SIZES, MAX_SIZE, FLIP) choose the augmented inputs for every model; see
    docs/predict.md.
    """
    # IoU of the class-wise NMS that merges a dense detector's detections on the augmented
    # images (GeneralizedRCNN uses ROI_HEADS.NMS_THRESH_TEST, as in Detectron2). < 0: the
    # model's own test NMS IoU (RETINANET.NMS_THRESH_TEST, FCOS.NMS_TH for FCOS, BlendMask and
    # SipMask, SSD/YOLOV3.NMS_THRESH_TEST), or 0.5 for SOLOv2, whose Matrix NMS has none.
    cfg.TEST.AUG.NMS_THRESH = -1.0

    # Weighted boxes fusion of several models' boxes (`--ensemble`, ensemble_boxes'
    # weighted_boxes_fusion; the defaults are its own). Boxes only: members' masks are dropped.
    cfg.TEST.ENSEMBLE = CN()
    # Boxes of one class overlapping a fused box by more than this IoU join its cluster.
    cfg.TEST.ENSEMBLE.IOU_THRESH = 0.55
    # Member boxes scoring below this are left out of the fusion.
    cfg.TEST.ENSEMBLE.SKIP_BOX_THRESH = 0.0
    # How a fused box's score is formed from its cluster: "avg", "max", "box_and_model_avg"
    # or "absent_model_aware_avg" (ensemble_boxes' conf_type).
    cfg.TEST.ENSEMBLE.CONF_TYPE = "avg"
