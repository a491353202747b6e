"""Config subtree of FCOS (MODEL.FCOS), with AdelaiDet's key names."""

from detectron2.config import CfgNode as CN

__all__ = ["add_fcos_config"]


def add_fcos_config(cfg):
    """
    Add MODEL.FCOS to `cfg`. Keys and defaults are AdelaiDet's (`adet/config/defaults.py`,
    36721221), so its FCOS and BlendMask configs load; the model is Detectron2's own FCOS
    (`cxr_d2.modeling.FCOS`) with AdelaiDet's head and inference, which fixes some of them
    (checked when the model is built). TOWER_BIAS and CLIP_BEFORE_NMS are cxr-d2's switches.
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
    # Normalisation in the towers: "GN" (AdelaiDet), "BN", "SyncBN" (one per FPN level, as
    # AdelaiDet's), "" or "none" (none).
    cfg.MODEL.FCOS.NORM = "GN"
    # The tower convs have a bias also before the norm. True: AdelaiDet (its checkpoints hold
    # `{cls,bbox}_tower.<i>.bias`; a bias before GroupNorm changes the output, so they must
    # load for its outputs). False: a bias only without a norm (mmdet's FCOS and the official
    # SipMask); an AdelaiDet checkpoint then does not load (8 biases unmapped).
    cfg.MODEL.FCOS.TOWER_BIAS = True
    # Prior probability of the classification logits at initialisation (focal loss).
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Focal loss alpha and gamma.
    cfg.MODEL.FCOS.LOSS_ALPHA = 0.25
    cfg.MODEL.FCOS.LOSS_GAMMA = 2.0
    # Normaliser of the losses: "fg", this batch's positive locations (AdelaiDet; there it
    # divides the classification and centerness losses); "moving_fg", their moving average
    # (Detectron2's FCOS, smoother with few positives). AdelaiDet's "all" is refused.
    cfg.MODEL.FCOS.LOSS_NORMALIZER_CLS = "fg"
    # Weight of loss_fcos_cls; only 1.0 is implemented (others are refused).
    cfg.MODEL.FCOS.LOSS_WEIGHT_CLS = 1.0
    # Box loss; Detectron2's FCOS implements "giou" only.
    cfg.MODEL.FCOS.LOC_LOSS_TYPE = "giou"
    # Box quality branch: "ctrness" (centerness). AdelaiDet's "iou" (the *_iou configs) is
    # refused.
    cfg.MODEL.FCOS.BOX_QUALITY = "ctrness"
    # AdelaiDet reads this key nowhere (its regression is always through a ReLU); kept so its
    # configs load. NORM_REG_TARGETS selects ReLU (True) or exp (False) here.
    cfg.MODEL.FCOS.USE_RELU = True
    # A learnable scalar per level multiplies the box regression.
    cfg.MODEL.FCOS.USE_SCALE = True
    # Centerness predicted from the box tower (True, AdelaiDet) or the classification tower.
    cfg.MODEL.FCOS.CENTERNESS_ON_REG = True
    # Regression targets (l, t, r, b) divided by the level's stride, predicted through a ReLU
    # (True); False predicts pixels through exp().
    cfg.MODEL.FCOS.NORM_REG_TARGETS = True
    # Inference, as AdelaiDet: per level, the (location, class) pairs whose sigmoid(cls)
    # exceeds INFERENCE_TH_TEST (sigmoid(cls) * sigmoid(centerness) with THRESH_WITH_CTR), the
    # PRE_NMS_TOPK_TEST best by sigmoid(cls) * sigmoid(centerness); class-wise NMS at NMS_TH
    # over all levels; POST_NMS_TOPK_TEST per image (ties at the last score kept). Scores are
    # sqrt(sigmoid(cls) * sigmoid(centerness)). (Detectron2's FCOS thresholds that score.)
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    cfg.MODEL.FCOS.NMS_TH = 0.6
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 100
    cfg.MODEL.FCOS.THRESH_WITH_CTR = False
    # Clip the boxes to the image before NMS (and, in BlendMask, before pooling the bases).
    # False: AdelaiDet, which clips only the final boxes (detector_postprocess); BlendMask's
    # masks then come from the unclipped boxes. True: NMS sees the clipped boxes (Detectron2's
    # FCOS). Measured on the parity fixtures: FCOS's 100 detections unchanged; BlendMask 99 of
    # 100 detections kept, 28 masks differ by up to 517 pixels (pooled in the clipped box).
    cfg.MODEL.FCOS.CLIP_BEFORE_NMS = False
    # AdelaiDet keys kept so its configs load; the model refuses values other than these (see
    # cxr_d2/modeling/fcos/fcos.py). TOP_LEVELS is free with build_fcos_resnet_fpn_backbone.
    cfg.MODEL.FCOS.TOP_LEVELS = 2
    cfg.MODEL.FCOS.USE_DEFORMABLE = False
    cfg.MODEL.FCOS.YIELD_PROPOSAL = False
    cfg.MODEL.FCOS.YIELD_BOX_FEATURES = False
    # Training-time pre/post NMS candidates (AdelaiDet, used as a proposal generator only).
    cfg.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
