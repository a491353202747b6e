"""Config subtree of FCOS (MODEL.FCOS), with AdelaiDet's key names."""

from detectron2.config import CfgNode as CN

__all__ = ["add_fcos_config"]


def add_fcos_config(cfg):
    """
    Add MODEL.FCOS to `cfg`. Keys and defaults are AdelaiDet's (`adet/config/defaults.py`), so
    its FCOS and BlendMask configs load; the model is Detectron2's own FCOS
    (`cxr_d2.modeling.FCOS`), which fixes some of them (checked when the model is built).
    """
    cfg.MODEL.FCOS = CN()
    # Number of foreground classes; 0 = take it from the training dataset's metadata.
    cfg.MODEL.FCOS.NUM_CLASSES = 0
    # Backbone features the head predicts from, finest first.
    cfg.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Their strides; must equal the backbone's (a check, Detectron2 reads them from it).
    cfg.MODEL.FCOS.FPN_STRIDES = [8, 16, 32, 64, 128]
    # Scale ranges of the levels: a location of level i is positive for a box whose largest
    # (l, t, r, b) lies in (SIZES_OF_INTEREST[i-1], SIZES_OF_INTEREST[i]]. Detectron2's FCOS
    # uses (4 * stride, 8 * stride), so this must be [8 * s for s in FPN_STRIDES[:-1]].
    cfg.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128, 256, 512]
    # Centre sampling: a location is positive only within POS_RADIUS strides of a box centre.
    cfg.MODEL.FCOS.CENTER_SAMPLE = True
    cfg.MODEL.FCOS.POS_RADIUS = 1.5
    # Towers: convs of the classification branch, of the box branch, and shared before both.
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 4
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 4
    cfg.MODEL.FCOS.NUM_SHARE_CONVS = 0
    # Normalisation in the towers: "GN" (AdelaiDet), "BN", "SyncBN", "" (none).
    cfg.MODEL.FCOS.NORM = "GN"
    # Prior probability of the classification logits at initialisation (focal loss).
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Focal loss alpha and gamma.
    cfg.MODEL.FCOS.LOSS_ALPHA = 0.25
    cfg.MODEL.FCOS.LOSS_GAMMA = 2.0
    # Box loss; Detectron2's FCOS implements "giou" only.
    cfg.MODEL.FCOS.LOC_LOSS_TYPE = "giou"
    # A learnable scalar per level multiplies the box regression.
    cfg.MODEL.FCOS.USE_SCALE = True
    # Centerness predicted from the box tower (True, AdelaiDet) or the classification tower.
    cfg.MODEL.FCOS.CENTERNESS_ON_REG = True
    # Regression targets (l, t, r, b) divided by the level's stride, predicted through a ReLU
    # (True); False predicts pixels through exp().
    cfg.MODEL.FCOS.NORM_REG_TARGETS = True
    # Inference: threshold on the score sqrt(sigmoid(cls) * sigmoid(centerness)) (Detectron2
    # thresholds the combined score; AdelaiDet thresholds sigmoid(cls) before multiplying),
    # candidates kept per level before NMS, class-wise NMS IoU, detections kept per image.
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    cfg.MODEL.FCOS.NMS_TH = 0.6
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 100
    # AdelaiDet keys kept so its configs load; Detectron2's FCOS has no such switch and the
    # model refuses values other than these (see cxr_d2/modeling/fcos/fcos.py).
    cfg.MODEL.FCOS.TOP_LEVELS = 2
    cfg.MODEL.FCOS.THRESH_WITH_CTR = False
    cfg.MODEL.FCOS.USE_DEFORMABLE = False
    cfg.MODEL.FCOS.YIELD_PROPOSAL = False
    # Training-time pre/post NMS candidates (AdelaiDet, used as a proposal generator only).
    cfg.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
