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
    # Channels of the 3x3 conv over the (concatenated) features before the 1x1 conv to
    # NUM_BASIS channels (official code: 768 -> 512 -> 32).
    cfg.MODEL.SIPMASK.BASIS_CONV_DIM = 512
    # Bilinear upsampling of the basis after the convs (4x: stride 8 -> 2).
    cfg.MODEL.SIPMASK.BASIS_UPSAMPLE = 4
    # Spatial preservation (SP): sub-regions (rows, cols) per box, each with its own
    # coefficients; (1, 1) is the baseline without SP.
    cfg.MODEL.SIPMASK.GRID = (2, 2)
    # Feature alignment (FA): a deformable 3x3 conv on the classification tower whose offsets
    # come from a zero-initialised 1x1 conv over the detached, ReLU'd (l, t, r, b) in strides;
    # False uses a plain 3x3 conv in its place.
    cfg.MODEL.SIPMASK.FEATURE_ALIGN = True
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
    # SipMask++ mask scoring: a small conv net reads each predicted mask (SMP probabilities,
    # detached) and predicts its IoU with the ground truth; inference multiplies the score by it.
    cfg.MODEL.SIPMASK.MASK_SCORING = CN()
    cfg.MODEL.SIPMASK.MASK_SCORING.ENABLED = False
    # Output channels of its 3x3 stride-2 convs (official: 16, 16, 16, 32, 64, 128).
    cfg.MODEL.SIPMASK.MASK_SCORING.CONV_DIMS = [16, 16, 16, 32, 64, 128]
    # Weight of loss_mask_iou, the mean squared error of the IoU (official: 10).
    cfg.MODEL.SIPMASK.MASK_SCORING.LOSS_WEIGHT = 10.0
    # Masks trained on: IoU target (mask > MASK_THRESH vs ground truth) above MIN_IOU and a
    # ground truth of at least MIN_GT_AREA basis pixels (official: 0.1 and 100).
    cfg.MODEL.SIPMASK.MASK_SCORING.MIN_IOU = 0.1
    cfg.MODEL.SIPMASK.MASK_SCORING.MIN_GT_AREA = 100
