"""Config subtree of SipMask (MODEL.SIPMASK); the detector's keys are MODEL.FCOS."""
from detectron2.config import CfgNode as CN

from cxr_d2.config.deform_resnet import add_deform_resnet_config

__all__ = ["add_sipmask_config"]


def add_sipmask_config(cfg):
    """
    Add MODEL.SIPMASK (and MODEL.FCOS when absent) to `cfg`. Defaults are the paper's SipMask
    (CBM on P3-P5, 32 basis masks, 2x2 sub-regions, feature alignment, weighted mask loss).
    """
    if "FCOS" not in cfg.MODEL:
        from cxr_d2.config.fcos import add_fcos_config

        add_fcos_config(cfg)
    # MODEL.RESNETS.DEFORM_INTERVAL for SipMask++'s deformable backbone (Detectron2's own
    # DEFORM_* keys plus AdelaiDet's interval; cxr_d2/config/deform_resnet.py).
    add_deform_resnet_config(cfg)
    cfg.MODEL.SIPMASK = CN()
    # Number of basis masks m (and of coefficients per sub-region).
    cfg.MODEL.SIPMASK.NUM_BASIS = 32
    # Features of the box tower the basis is computed from, finest first. Contextual basis
    # masks (CBM): ["p3", "p4", "p5"] (coarser ones upsampled bilinearly to the first and
    # concatenated); ["p3"] is the YOLACT-like baseline.
    cfg.MODEL.SIPMASK.BASIS_IN_FEATURES = ["p3", "p4", "p5"]
    # Hidden channels of the basis convs (official code: 3 x 256 -> 512 -> 32).
    cfg.MODEL.SIPMASK.BASIS_CONV_DIM = 512
    # Order of the basis convs. "1x1-3x3" (official): 1x1 conv to BASIS_CONV_DIM, ReLU, 3x3 conv
    # to NUM_BASIS, ReLU (the basis is >= 0). "3x3-1x1" (cxr-d2 before issue 18): 3x3 conv,
    # ReLU, 1x1 conv, no final ReLU (basis of either sign); official checkpoints do not load.
    cfg.MODEL.SIPMASK.BASIS_ORDER = "1x1-3x3"
    # Bilinear upsampling of the basis after the convs (4x: stride 8 -> 2).
    cfg.MODEL.SIPMASK.BASIS_UPSAMPLE = 4
    # Spatial preservation (SP): sub-regions (rows, cols) per box, each with its own
    # coefficients; (1, 1) is the baseline without SP.
    cfg.MODEL.SIPMASK.GRID = (2, 2)
    # Feature alignment (FA): a deformable 3x3 conv on the classification tower whose offsets
    # come from a zero-initialised, bias-free 1x1 conv over the detached (l, t, r, b) in strides
    # (as the head outputs them, see REG_RELU), then FEATURE_ALIGN_NORM and ReLU (official);
    # False uses a plain 3x3 conv (same norm) in its place.
    cfg.MODEL.SIPMASK.FEATURE_ALIGN = True
    # Deformable (offset) groups of FA's conv: 4 (official, 72 offset channels); 1 (cxr-d2
    # before issue 18) shares one offset field across all channels.
    cfg.MODEL.SIPMASK.FEATURE_ALIGN_GROUPS = 4
    # Norm after FA's conv: "GN" (official, GroupNorm(32), the conv has no bias); "" (cxr-d2
    # before issue 18) a conv with bias and no norm.
    cfg.MODEL.SIPMASK.FEATURE_ALIGN_NORM = "GN"
    # ReLU on the regressed (l, t, r, b). False (official SipMask head): the raw distances feed
    # FA and decode the boxes at inference (a negative one gives an inverted box, clamped to
    # the image); in training the boxes of the GIoU and mask losses are decoded by Detectron2's
    # Box2BoxTransformLinear, which clamps the distances at 0 (the official IoU loss takes
    # them raw). True (AdelaiDet's FCOS, cxr-d2 before issue 18): ReLU'd everywhere. On the
    # official fixture, decoding the boxes through a ReLU alone already loses 8 of its 84
    # detections (boxes with a negative side).
    cfg.MODEL.SIPMASK.REG_RELU = False
    # Mask alignment weighting loss (WL): per-instance BCE weighted by IoU(pred box, gt box)
    # x classification score, weights normalised to mean 1; False is plain BCE.
    cfg.MODEL.SIPMASK.WEIGHTED_LOSS = True
    # Boxes that crop the mask loss (and set SMP's sub-regions in training): "pred", the
    # detached predicted boxes (official code), or "gt", the matched ground-truth boxes (as
    # YOLACT trains; masks learn while the predicted boxes are still poor). WL's weights use
    # the predicted boxes either way.
    cfg.MODEL.SIPMASK.MASK_LOSS_BOXES = "pred"
    # Weight of loss_mask in the total loss.
    cfg.MODEL.SIPMASK.MASK_LOSS_WEIGHT = 1.0
    # Positives per image whose mask is predicted in training (the highest-scoring when there
    # are more; 0 = all). Bounds memory: each costs rows*cols basis-sized maps.
    cfg.MODEL.SIPMASK.MAX_MASK_POSITIVES = 0
    # Mask probability threshold at inference (inside the box).
    cfg.MODEL.SIPMASK.MASK_THRESH = 0.4
    # Box decoding at inference. "official" (mmdetection's get_bboxes): per level the
    # PRE_NMS_TOPK_TEST locations of largest max_k sigmoid(cls_k) x sigmoid(ctr); a (location,
    # class) is a candidate when sigmoid(cls) > INFERENCE_TH_TEST, scored sigmoid(cls) x
    # sigmoid(ctr); boxes clamped to [0, W - 1] x [0, H - 1]; class-wise NMS with +1-pixel
    # areas suppressing at IoU >= NMS_TH; the POST_NMS_TOPK_TEST best. "detectron2" (cxr-d2
    # before issue 18): threshold and rank sqrt(sigmoid(cls) x sigmoid(ctr)) per (location,
    # class), torchvision NMS (IoU > NMS_TH), boxes clipped to [0, W]; on the official
    # fixture it matches none of the 84 official detections.
    cfg.MODEL.SIPMASK.POSTPROCESS = "official"
    # Mask pasting at inference. "official" (the official CropSplit): SMP on the basis grid,
    # pixel (px, py) (integer indices) inside x1 <= px < x2, y1 <= py < y2 of the box in basis
    # pixels, sub-region trunc((px - x1) / ((x2 - x1 + 0.1) / cols)) (rows alike); the whole
    # map upsampled bilinearly to the image and thresholded (> MASK_THRESH). "box" (cxr-d2
    # before issue 18): pixel centres against the box, sub-regions split exactly at w / cols,
    # and only the image pixels inside the box sampled bilinearly (a mask never leaks outside
    # its box; faster for few small boxes).
    cfg.MODEL.SIPMASK.MASK_PASTE = "official"
    # SipMask++ mask scoring: a small conv net reads each predicted mask (SMP probabilities,
    # detached) and predicts its IoU with the ground truth; inference multiplies the score by it.
    cfg.MODEL.SIPMASK.MASK_SCORING = CN()
    cfg.MODEL.SIPMASK.MASK_SCORING.ENABLED = False
    # Output channels of its 3x3 stride-2 convs (official: 16, 16, 16, 32, 64, 128).
    cfg.MODEL.SIPMASK.MASK_SCORING.CONV_DIMS = [16, 16, 16, 32, 64, 128]
    # Zero padding of those convs: 0 (official; six unpadded stride-2 convs need basis maps of
    # at least 127 px, i.e. inputs of 254 px at basis stride 2); 1 (cxr-d2 before issue 18)
    # works at any size and sees the mask borders.
    cfg.MODEL.SIPMASK.MASK_SCORING.PADDING = 0
    # Weight of loss_mask_iou, the mean squared error of the IoU (official: 10).
    cfg.MODEL.SIPMASK.MASK_SCORING.LOSS_WEIGHT = 10.0
    # Masks trained on: IoU target (mask > MASK_THRESH vs ground truth) above MIN_IOU and a
    # ground truth of at least MIN_GT_AREA basis pixels (official: 0.1 and 100).
    cfg.MODEL.SIPMASK.MASK_SCORING.MIN_IOU = 0.1
    cfg.MODEL.SIPMASK.MASK_SCORING.MIN_GT_AREA = 100
    # SipMask-VIS (META_ARCHITECTURE "SipMaskVIS", sipmask/vis/): the tracking branch and the
    # matching of detections to identities between frames. Defaults: the official SipMask-VIS
    # code (mmdetection's SipMaskHead: track_convs, fovea_track, match_coeff).
    cfg.MODEL.SIPMASK.TRACK = CN()
    # FPN levels the tracking branch reads (each upsampled to the first and concatenated).
    cfg.MODEL.SIPMASK.TRACK.IN_FEATURES = ["p3", "p4", "p5"]
    # 3x3 conv + norm + ReLU blocks shared over those levels, parallel to the towers.
    cfg.MODEL.SIPMASK.TRACK.NUM_CONVS = 2
    # Their norm ("" for none, with bias).
    cfg.MODEL.SIPMASK.TRACK.NORM = "GN"
    # Channels of the tracking vectors (the 1x1 fusion conv's output).
    cfg.MODEL.SIPMASK.TRACK.EMBED_DIM = 512
    # Weights of log(detection score), box IoU and class agreement added to the log softmax
    # of the embedding similarities when matching (MaskTrack R-CNN's match_coeff).
    cfg.MODEL.SIPMASK.TRACK.MATCH_WEIGHTS = [1.0, 2.0, 10.0]
    # Weight of loss_track, the cross-entropy over the reference identities + "new".
    cfg.MODEL.SIPMASK.TRACK.LOSS_WEIGHT = 1.0
    # Jitter of the reference frame's ground-truth boxes in training: centre by U(-a, a) x
    # size, size by 1 + U(-a, a).
    cfg.MODEL.SIPMASK.TRACK.REF_BOX_JITTER = 0.05
