"""Config subtree of SOLOv2 (MODEL.SOLOV2), with AdelaiDet's key names and defaults."""

from detectron2.config import CfgNode as CN

__all__ = ["add_solov2_config"]


def add_solov2_config(cfg):
    """
    Add MODEL.SOLOV2 to `cfg`. Keys and defaults are AdelaiDet's (`adet/config/defaults.py`,
    plus its later `FREEZE`), so its SOLOv2 configs load; NUM_CLASSES defaults to 0 (= from the
    dataset) instead of 80. The model is `cxr_d2.modeling.SOLOv2`; docs/solov2.md lists where
    it deviates from AdelaiDet.
    """
    s = cfg.MODEL.SOLOV2 = CN()
    # --- Instance branch (category branch + kernel branch), one S x S grid per level.
    # FPN features the grids are predicted from, finest first.
    s.INSTANCE_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    # Stride each of them is resampled to before the grids (AdelaiDet: P2 halved, P6 doubled);
    # a prediction of level i is kept at inference only if its mask is larger than this
    # (in the unit of MIN_MASK_AREA).
    s.FPN_INSTANCE_STRIDES = [8, 8, 16, 32, 32]
    # Per level (lower, upper): an instance whose sqrt(box w * box h) in input pixels lies in
    # [lower, upper] is a target of that level (ranges overlap: one instance, two levels).
    s.FPN_SCALE_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    # Centre region: an instance is positive in the grid cells covered by its mask's centre of
    # mass +- SIGMA * box size / 2 (at most the 3 x 3 cells around the centre cell).
    s.SIGMA = 0.2
    # Channels of the FPN features (must equal MODEL.FPN.OUT_CHANNELS) and of the towers.
    s.INSTANCE_IN_CHANNELS = 256
    s.INSTANCE_CHANNELS = 512
    # 3x3 conv + norm + ReLU layers in each of the category and kernel towers.
    s.NUM_INSTANCE_CONVS = 4
    # Deformable conv (torchvision.ops.deform_conv2d) as the last conv of both towers;
    # TYPE_DCN "DCN" (v1, offsets only) or "DCNv2" (modulated). AdelaiDet ignores both keys.
    s.USE_DCN_IN_INSTANCE = False
    s.TYPE_DCN = "DCN"
    # S of each level's S x S grid (the paper's 40, 36, 24, 16, 12).
    s.NUM_GRIDS = [40, 36, 24, 16, 12]
    # Number of foreground classes; 0 = take it from the training dataset's metadata.
    s.NUM_CLASSES = 0
    # Length of each predicted kernel: the 1x1 dynamic conv's weights, so it must equal NUM_MASKS.
    s.NUM_KERNELS = 256
    # Normalisation in both branches: "GN" (AdelaiDet), "BN", "SyncBN", "" or "none" (none; the
    # convs then have a bias, as AdelaiDet's with "none").
    s.NORM = "GN"
    # Concatenate normalised (x, y) coordinates to the kernel branch's input (CoordConv).
    s.USE_COORD_CONV = True
    # Prior probability of the category logits at initialisation (focal loss).
    s.PRIOR_PROB = 0.01
    # Freeze the backbone (and FPN) parameters, e.g. to fine-tune the heads only.
    s.FREEZE = False

    # --- Mask feature branch: FPN levels merged at 1/4 scale (coordinates on the coarsest).
    s.MASK_IN_FEATURES = ["p2", "p3", "p4", "p5"]
    # Channels of those FPN features (must equal MODEL.FPN.OUT_CHANNELS) and of the branch.
    s.MASK_IN_CHANNELS = 256
    s.MASK_CHANNELS = 128
    # Channels E of the unified mask features (the kernels' length).
    s.NUM_MASKS = 256

    # --- Inference.
    # Candidates (after the score threshold) kept for Matrix NMS, the highest scored.
    s.NMS_PRE = 500
    # Category score threshold of a grid cell before and after Matrix NMS.
    s.SCORE_THR = 0.1
    s.UPDATE_THR = 0.05
    # Mask probability threshold (binary masks, and the maskness of a candidate).
    s.MASK_THR = 0.5
    # Detections kept per image.
    s.MAX_PER_IMG = 100
    # "matrix" (Matrix NMS) is the only NMS implemented (AdelaiDet's "mask" is not either).
    s.NMS_TYPE = "matrix"
    # Matrix NMS decay: "gaussian" exp(-NMS_SIGMA * iou^2) or "linear" 1 - iou.
    s.NMS_KERNEL = "gaussian"
    s.NMS_SIGMA = 2
    # cxr-d2's own keys (not AdelaiDet's); the defaults are AdelaiDet's behaviour, with which
    # AdelaiDet's weights give its masks pixel for pixel (tests/parity/test_adelaidet_solov2.py).
    # The unit of the small-mask rule: a candidate is kept when its binary mask (at the mask
    # features' stride, 4) holds more than FPN_INSTANCE_STRIDES[level] of
    #   "cells": mask-feature cells (AdelaiDet): masks under ~stride x 16 input pixels are
    #            dropped (11 x 11 px at strides 8, 23 x 23 px at 32): lesions of that size
    #            can never be detected;
    #   "pixels": input pixels (cells x 16): only masks of a few cells are dropped.
    s.MIN_MASK_AREA = "cells"
    # What is resized to the input before thresholding at MASK_THR: "probs" (AdelaiDet) the
    # sigmoid of the mask logits; "logits" the logits (sigmoid afterwards), as the Dice loss
    # upsamples them. On AdelaiDet's fixture (40 masks of 256 x 256) "logits" changes up to 577
    # pixels per mask along the borders; detections and scores are the same.
    s.MASK_UPSAMPLE = "probs"

    # --- Losses.
    s.LOSS = CN()
    # Category loss: sigmoid focal loss (True is the only option implemented).
    s.LOSS.FOCAL_USE_SIGMOID = True
    s.LOSS.FOCAL_ALPHA = 0.25
    s.LOSS.FOCAL_GAMMA = 2.0
    # Weights of the category (focal) and mask (Dice) losses.
    s.LOSS.FOCAL_WEIGHT = 1.0
    s.LOSS.DICE_WEIGHT = 3.0
    # cxr-d2's own key (not AdelaiDet's): stride, in input pixels, at which the Dice loss
    # compares masks. The mask logits (at the mask features' stride, 4) are upsampled
    # bilinearly to it and the instance masks reduced to binary masks at it. 4 is AdelaiDet's
    # behaviour; 1 or 2 let lesions of a few pixels be learnt (must divide 4).
    s.LOSS.DICE_STRIDE = 4
