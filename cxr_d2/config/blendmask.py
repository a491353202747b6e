"""Config subtrees of BlendMask (MODEL.BASIS_MODULE, MODEL.BLENDMASK), AdelaiDet's key names."""

from detectron2.config import CfgNode as CN

__all__ = ["add_blendmask_config"]


def add_blendmask_config(cfg):
    """
    Add MODEL.BASIS_MODULE and MODEL.BLENDMASK to `cfg`. Keys and defaults are AdelaiDet's
    (`adet/config/defaults.py`) so its BlendMask configs load, except BASIS_MODULE.NUM_CLASSES
    (0 = from the dataset, as every head here). The detector is MODEL.FCOS
    (cxr_d2/config/fcos.py); the model is `cxr_d2.modeling.BlendMask`.
    """
    b = cfg.MODEL.BASIS_MODULE = CN()
    # The bottom module producing the bases; registered in BASIS_MODULE_REGISTRY.
    b.NAME = "ProtoNet"
    # K: the number of basis maps (and of attention maps per instance).
    b.NUM_BASES = 4
    # Auxiliary semantic segmentation loss on the bottom module's input (targets drawn from
    # the instance masks on the fly; AdelaiDet reads them from files made by a script).
    b.LOSS_ON = False
    # AdelaiDet's name of the semantic-target files; not read here (targets come from masks).
    b.ANN_SET = "coco"
    # Channels of the bottom module's convs.
    b.CONVS_DIM = 128
    # FPN levels fused into the bases, finest first; the bases are at half its stride.
    b.IN_FEATURES = ["p3", "p4", "p5"]
    # Normalisation of the bottom module: "GN", "BN", "SyncBN", "".
    b.NORM = "SyncBN"
    # Normalisation of the semantic head (cxr-d2's key). "BN": AdelaiDet, whose semantic head
    # is always conv (no bias) + BatchNorm2d, whatever NORM says (its checkpoints hold BN
    # statistics there). Any other norm name ("GN", "SyncBN", "") replaces it.
    b.SEM_NORM = "BN"
    # 3x3 convs after fusing the levels (before the 2x upsampling).
    b.NUM_CONVS = 3
    # Stride of the semantic logits: must be the stride of IN_FEATURES[0].
    b.COMMON_STRIDE = 8
    # Foreground classes of the semantic loss (plus background); 0 = from the dataset.
    b.NUM_CLASSES = 0
    # Weight of loss_basis_sem.
    b.LOSS_WEIGHT = 0.3

    # AdelaiDet's top module of OneStageRCNN-style models; cxr-d2's BlendMask always has its
    # 3x3 conv top layer (`TopLayer`). Kept so AdelaiDet's configs load.
    t = cfg.MODEL.TOP_MODULE = CN()
    t.NAME = "conv"
    t.DIM = 16

    m = cfg.MODEL.BLENDMASK = CN()
    # M: attentions are K x M x M per instance, predicted by the top layer on the box tower.
    m.ATTN_SIZE = 14
    # Interpolation of the attentions from M x M to the RoI resolution (F.interpolate mode).
    m.TOP_INTERP = "bilinear"
    # R: the bases are RoI-pooled to R x R per box; the masks are R x R before pasting.
    m.BOTTOM_RESOLUTION = 56
    # RoI pooling of the bases: "ROIAlignV2" (aligned, torchvision), "ROIAlign", "ROIPool".
    m.POOLER_TYPE = "ROIAlignV2"
    m.POOLER_SAMPLING_RATIO = 1
    # One scale, 1 / the bases' stride (1/4 with IN_FEATURES starting at P3).
    m.POOLER_SCALES = (0.25,)
    # Weight of loss_mask.
    m.INSTANCE_LOSS_WEIGHT = 1.0
    # Inference also returns "bases" (K, Hb, Wb) (and "sem_thing_seg" with LOSS_ON) per image.
    m.VISUALIZE = False
