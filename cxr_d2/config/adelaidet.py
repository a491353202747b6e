"""
AdelaiDet's config keys that no cxr-d2 model reads (`adet/config/defaults.py`, AdelaiDet
36721221): its extra input, backbone and model switches and the subtrees of its models that
cxr-d2 does not implement (BAText, BoxInst, CondInst, MEInst, FCPose, DLA, VoVNet, BiFPN). With
them, a full AdelaiDet config (a `cfg.dump()` or any published file) merges into cxr-d2's; the
values that ask for something cxr-d2 does not do are refused by `check_adelaidet_config`, with
one ConfigError naming the key. The FCOS, BlendMask and SOLOv2 keys live with their models
(`fcos.py`, `blendmask.py`, `solov2.py`).
"""

from detectron2.config import CfgNode as CN

from ..errors import ConfigError
from .deform_resnet import add_deform_resnet_config

__all__ = ["add_adelaidet_config", "check_adelaidet_config"]


def add_adelaidet_config(cfg):
    """Add AdelaiDet's keys that no cxr-d2 model reads, with AdelaiDet's defaults."""
    # Input. HFLIP_TRAIN: AdelaiDet's training flip (cxr-d2's is INPUT.RANDOM_FLIP); CROP_INSTANCE:
    # AdelaiDet's crop keeps every instance whole (Detectron2's RandomCrop, used here, does not);
    # IS_ROTATE: rotated-box training (BAText).
    cfg.INPUT.HFLIP_TRAIN = True
    cfg.INPUT.CROP.CROP_INSTANCE = True
    cfg.INPUT.IS_ROTATE = False
    m = cfg.MODEL
    # Backbone switches: MobileNetV2 instead of ResNet; anti-aliased (blur-pool) ResNet.
    m.MOBILENET = False
    m.BACKBONE.ANTI_ALIAS = False
    add_deform_resnet_config(cfg)  # MODEL.RESNETS.DEFORM_INTERVAL (implemented)
    m.FCPOSE_ON = False
    # BAText (text spotting).
    m.BATEXT = CN()
    m.BATEXT.CANONICAL_SIZE = 96
    m.BATEXT.CONV_DIM = 256
    m.BATEXT.CUSTOM_DICT = ''
    m.BATEXT.EVAL_TYPE = 3
    m.BATEXT.IN_FEATURES = ['p2', 'p3', 'p4']
    m.BATEXT.NUM_CHARS = 25
    m.BATEXT.NUM_CONV = 2
    m.BATEXT.POOLER_RESOLUTION = [8, 32]
    m.BATEXT.POOLER_SCALES = [0.25, 0.125, 0.0625]
    m.BATEXT.RECOGNITION_LOSS = 'ctc'
    m.BATEXT.RECOGNIZER = 'attn'
    m.BATEXT.SAMPLING_RATIO = 1
    m.BATEXT.USE_AET = False
    m.BATEXT.USE_COORDCONV = False
    m.BATEXT.VOC_SIZE = 96
    # BoxInst (box-supervised CondInst); ENABLED True is refused.
    m.BOXINST = CN()
    m.BOXINST.BOTTOM_PIXELS_REMOVED = 10
    m.BOXINST.ENABLED = False
    m.BOXINST.PAIRWISE = CN()
    m.BOXINST.PAIRWISE.COLOR_THRESH = 0.3
    m.BOXINST.PAIRWISE.DILATION = 2
    m.BOXINST.PAIRWISE.SIZE = 3
    m.BOXINST.PAIRWISE.WARMUP_ITERS = 10000
    # BiFPN backbone.
    m.BiFPN = CN()
    m.BiFPN.IN_FEATURES = ['res2', 'res3', 'res4', 'res5']
    m.BiFPN.NORM = ''
    m.BiFPN.NUM_REPEATS = 6
    m.BiFPN.OUT_CHANNELS = 160
    # CondInst.
    m.CONDINST = CN()
    m.CONDINST.BOTTOM_PIXELS_REMOVED = -1
    m.CONDINST.MASK_BRANCH = CN()
    m.CONDINST.MASK_BRANCH.CHANNELS = 128
    m.CONDINST.MASK_BRANCH.IN_FEATURES = ['p3', 'p4', 'p5']
    m.CONDINST.MASK_BRANCH.NORM = 'BN'
    m.CONDINST.MASK_BRANCH.NUM_CONVS = 4
    m.CONDINST.MASK_BRANCH.OUT_CHANNELS = 8
    m.CONDINST.MASK_BRANCH.SEMANTIC_LOSS_ON = False
    m.CONDINST.MASK_HEAD = CN()
    m.CONDINST.MASK_HEAD.CHANNELS = 8
    m.CONDINST.MASK_HEAD.DISABLE_REL_COORDS = False
    m.CONDINST.MASK_HEAD.NUM_LAYERS = 3
    m.CONDINST.MASK_HEAD.USE_FP16 = False
    m.CONDINST.MASK_OUT_STRIDE = 4
    m.CONDINST.MAX_PROPOSALS = -1
    m.CONDINST.TOPK_PROPOSALS_PER_IM = -1
    # DLA backbones.
    m.DLA = CN()
    m.DLA.CONV_BODY = 'DLA34'
    m.DLA.NORM = 'FrozenBN'
    m.DLA.OUT_FEATURES = ['stage2', 'stage3', 'stage4', 'stage5']
    # FCPose; MODEL.FCPOSE_ON True is refused.
    m.FCPOSE = CN()
    m.FCPOSE.ATTN_LEN = 2737
    m.FCPOSE.BASIS_MODULE = CN()
    m.FCPOSE.BASIS_MODULE.BN_TYPE = 'SyncBN'
    m.FCPOSE.BASIS_MODULE.COMMON_STRIDE = 8
    m.FCPOSE.BASIS_MODULE.CONVS_DIM = 128
    m.FCPOSE.BASIS_MODULE.LOSS_WEIGHT = 0.2
    m.FCPOSE.BASIS_MODULE.NUM_BASES = 32
    m.FCPOSE.BASIS_MODULE.NUM_CLASSES = 17
    m.FCPOSE.DISTANCE_NORM = 12.0
    m.FCPOSE.DYNAMIC_CHANNELS = 32
    m.FCPOSE.FOCAL_LOSS_ALPHA = 0.25
    m.FCPOSE.FOCAL_LOSS_GAMMA = 2.0
    m.FCPOSE.GT_HEATMAP_STRIDE = 2
    m.FCPOSE.HEAD_HEATMAP_SIGMA = 0.01
    m.FCPOSE.HEATMAP_SIGMA = 1.8
    m.FCPOSE.LOSS_WEIGHT_DIRECTION = 9.0
    m.FCPOSE.LOSS_WEIGHT_KEYPOINT = 2.5
    m.FCPOSE.MAX_PROPOSALS = 70
    m.FCPOSE.PROPOSALS_PER_INST = 70
    m.FCPOSE.SIGMA = 1
    # MEInst.
    m.MEInst = CN()
    m.MEInst.AGNOSTIC = True
    m.MEInst.CENTER_SAMPLE = True
    m.MEInst.DIM_MASK = 60
    m.MEInst.FLAG_PARAMETERS = False
    m.MEInst.FPN_STRIDES = [8, 16, 32, 64, 128]
    m.MEInst.GCN_KERNEL_SIZE = 9
    m.MEInst.INFERENCE_TH_TEST = 0.05
    m.MEInst.INFERENCE_TH_TRAIN = 0.05
    m.MEInst.IN_FEATURES = ['p3', 'p4', 'p5', 'p6', 'p7']
    m.MEInst.IOU_LABELS = [0, 1]
    m.MEInst.IOU_THRESHOLDS = [0.5]
    m.MEInst.LAST_DEFORMABLE = False
    m.MEInst.LOC_LOSS_TYPE = 'giou'
    m.MEInst.LOSS_ALPHA = 0.25
    m.MEInst.LOSS_GAMMA = 2.0
    m.MEInst.LOSS_ON_MASK = False
    m.MEInst.MASK_LOSS_TYPE = 'mse'
    m.MEInst.MASK_ON = True
    m.MEInst.MASK_SIZE = 28
    m.MEInst.NMS_TH = 0.6
    m.MEInst.NORM = 'GN'
    m.MEInst.NUM_BOX_CONVS = 4
    m.MEInst.NUM_CLASSES = 80
    m.MEInst.NUM_CLS_CONVS = 4
    m.MEInst.NUM_MASK_CONVS = 4
    m.MEInst.NUM_SHARE_CONVS = 0
    m.MEInst.PATH_COMPONENTS = (
        "datasets/coco/components/coco_2017_train_class_agnosticTrue_whitenTrue_sigmoidTrue_60.npz"
    )
    m.MEInst.POST_NMS_TOPK_TEST = 100
    m.MEInst.POST_NMS_TOPK_TRAIN = 100
    m.MEInst.POS_RADIUS = 1.5
    m.MEInst.PRE_NMS_TOPK_TEST = 1000
    m.MEInst.PRE_NMS_TOPK_TRAIN = 1000
    m.MEInst.PRIOR_PROB = 0.01
    m.MEInst.SIGMOID = True
    m.MEInst.SIZES_OF_INTEREST = [64, 128, 256, 512]
    m.MEInst.THRESH_WITH_CTR = False
    m.MEInst.TOP_LEVELS = 2
    m.MEInst.TYPE_DEFORMABLE = 'DCNv1'
    m.MEInst.USE_DEFORMABLE = False
    m.MEInst.USE_GCN_IN_MASK = False
    m.MEInst.USE_RELU = True
    m.MEInst.USE_SCALE = True
    m.MEInst.WHITEN = True
    # VoVNet backbones.
    m.VOVNET = CN()
    m.VOVNET.BACKBONE_OUT_CHANNELS = 256
    m.VOVNET.CONV_BODY = 'V-39-eSE'
    m.VOVNET.NORM = 'FrozenBN'
    m.VOVNET.OUT_CHANNELS = 256
    m.VOVNET.OUT_FEATURES = ['stage2', 'stage3', 'stage4', 'stage5']


# key -> (value that cxr-d2 implements, what to do instead)
_REFUSED = {
    "MODEL.BOXINST.ENABLED": (False, "BoxInst is not implemented; set it False"),
    "MODEL.FCPOSE_ON": (False, "FCPose is not implemented; set it False"),
    "MODEL.MOBILENET": (False, "the MobileNetV2 backbone is not implemented; set it False"),
    "MODEL.BACKBONE.ANTI_ALIAS": (False, "the anti-aliased ResNet is not implemented; set False"),
    "INPUT.IS_ROTATE": (False, "rotated-box training is not implemented; set it False"),
}


def _value(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_adelaidet_config(cfg):
    """
    One ConfigError naming the key for an AdelaiDet setting cxr-d2 does not implement (see
    `_REFUSED`); also AdelaiDet's instance-keeping crop and a training flip that
    INPUT.HFLIP_TRAIN turns off while INPUT.RANDOM_FLIP keeps it on.
    """
    for key, (allowed, what) in _REFUSED.items():
        if _value(cfg, key) != allowed:
            raise ConfigError(f"{key} is {_value(cfg, key)}: {what}")
    if cfg.INPUT.CROP.ENABLED and cfg.INPUT.CROP.CROP_INSTANCE:
        raise ConfigError(
            "INPUT.CROP.CROP_INSTANCE is True (AdelaiDet's crop that keeps every instance whole), "
            "which is not implemented; set it False for Detectron2's RandomCrop, or "
            "INPUT.CROP.ENABLED False"
        )
    if not cfg.INPUT.HFLIP_TRAIN and cfg.INPUT.RANDOM_FLIP != "none":
        raise ConfigError(
            f"INPUT.HFLIP_TRAIN is False but INPUT.RANDOM_FLIP is '{cfg.INPUT.RANDOM_FLIP}'; "
            "cxr-d2 flips by INPUT.RANDOM_FLIP: set it 'none' to train without flipping"
        )
