"""Config subtrees of the SSD and YOLOv3 meta-architectures and their backbones."""

from detectron2.config import CfgNode as CN

__all__ = ["add_ssd_config", "add_yolov3_config"]


def add_ssd_config(cfg):
    """
    Add MODEL.SSD, MODEL.VGG and INPUT.SSD_AUG to `cfg`. The defaults are the paper's SSD512
    (VGG16, 7 sources, VOC-style default boxes for a 512x512 input).
    """
    cfg.MODEL.SSD = CN()
    # Number of foreground classes (background is the extra last class of the softmax);
    # 0 = take it from the training dataset's metadata.
    cfg.MODEL.SSD.NUM_CLASSES = 0
    # Backbone features the head predicts from, finest first (one default-box set each).
    cfg.MODEL.SSD.IN_FEATURES = [
        "conv4_3",
        "fc7",
        "conv8_2",
        "conv9_2",
        "conv10_2",
        "conv11_2",
        "conv12_2",
    ]
    # IoU at or above which a default box is matched to a ground-truth box (besides the best
    # default box of every ground-truth box, which is always matched).
    cfg.MODEL.SSD.IOU_THRESHOLD = 0.5
    # Hard negative mining: at most this many negatives per positive, per image.
    cfg.MODEL.SSD.NEG_POS_RATIO = 3
    # Box coder weights (wx, wy, ww, wh): SSD's variances (0.1, 0.2) as 1/variance.
    cfg.MODEL.SSD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    # Beta of the smooth-L1 box loss (SSD: 1.0, in encoded units).
    cfg.MODEL.SSD.SMOOTH_L1_BETA = 1.0
    # Inference: score threshold of a (default box, class) pair, pairs kept per image before
    # NMS (the highest scored), and the class-wise NMS IoU threshold. Detections per image:
    # TEST.DETECTIONS_PER_IMAGE.
    cfg.MODEL.SSD.SCORE_THRESH_TEST = 0.02
    cfg.MODEL.SSD.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.SSD.NMS_THRESH_TEST = 0.45

    cfg.MODEL.SSD.PRIOR = CN()
    # Per source feature: the default boxes' minimum and maximum size in input pixels. At
    # every location SSD puts a min x min box, a sqrt(min*max) square, and min*sqrt(r) x
    # min/sqrt(r) plus its transpose for every r in ASPECT_RATIOS. Defaults: SSD512 (VOC).
    cfg.MODEL.SSD.PRIOR.MIN_SIZES = [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8]
    cfg.MODEL.SSD.PRIOR.MAX_SIZES = [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6]
    # Per source feature: the aspect ratios r > 1 (each adds two boxes: r and 1/r).
    cfg.MODEL.SSD.PRIOR.ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
    # Per source feature: distance in input pixels between default-box centres.
    cfg.MODEL.SSD.PRIOR.STEPS = [8, 16, 32, 64, 128, 256, 512]
    # Centre of cell (i, j) is ((j + OFFSET) * step, (i + OFFSET) * step).
    cfg.MODEL.SSD.PRIOR.OFFSET = 0.5

    cfg.MODEL.VGG = CN()
    # Output channels of the five VGG16 stages (2, 2, 3, 3, 3 convs); VGG16: 64 ... 512.
    cfg.MODEL.VGG.STAGE_CHANNELS = [64, 128, 256, 512, 512]
    # Channels of fc6 (3x3, dilation FC6_DILATION) and fc7 (1x1), SSD's atrous fc layers.
    cfg.MODEL.VGG.FC_CHANNELS = 1024
    cfg.MODEL.VGG.FC6_DILATION = 6
    # SSD extra layers after fc7, one per row: [1x1 channels, 3x3-or-kxk out channels, kernel,
    # stride, padding] of the second conv. Default: SSD512's conv8 ... conv12.
    cfg.MODEL.VGG.EXTRA_LAYERS = [
        [256, 512, 3, 2, 1],
        [128, 256, 3, 2, 1],
        [128, 256, 3, 2, 1],
        [128, 256, 3, 2, 1],
        [128, 256, 4, 1, 1],
    ]
    # Initial scale of the L2 normalisation of conv4_3 (SSD: 20).
    cfg.MODEL.VGG.L2NORM_SCALE = 20.0
    # Normalisation after every conv: "" (the original VGG), "BN", "GN", "SyncBN", ...
    cfg.MODEL.VGG.NORM = ""
    # Features the backbone returns (any of conv4_3, fc7 and the extras' conv<k>_2).
    cfg.MODEL.VGG.OUT_FEATURES = [
        "conv4_3",
        "fc7",
        "conv8_2",
        "conv9_2",
        "conv10_2",
        "conv11_2",
        "conv12_2",
    ]

    cfg.INPUT.SSD_AUG = CN()
    # Train with SSD's augmentation (photometric distortion, expand, min-IoU crop, resize to
    # SIZE x SIZE, flip) through cxr_d2.data.transforms.SSDDatasetMapper instead of
    # CXRDatasetMapper's ResizeShortestEdge + flip.
    cfg.INPUT.SSD_AUG.ENABLED = False
    # Side of the square the training images are resized to after cropping.
    cfg.INPUT.SSD_AUG.SIZE = 512
    # Photometric distortion: additive brightness delta (0-255 scale), contrast and
    # saturation factor ranges, hue delta in degrees; each applied with probability 0.5.
    cfg.INPUT.SSD_AUG.BRIGHTNESS_DELTA = 32
    cfg.INPUT.SSD_AUG.CONTRAST_RANGE = (0.5, 1.5)
    cfg.INPUT.SSD_AUG.SATURATION_RANGE = (0.5, 1.5)
    cfg.INPUT.SSD_AUG.HUE_DELTA = 18
    # Zoom out: with probability EXPAND_PROB, put the image on a canvas up to EXPAND_MAX_RATIO
    # times larger filled with MODEL.PIXEL_MEAN.
    cfg.INPUT.SSD_AUG.EXPAND_PROB = 0.5
    cfg.INPUT.SSD_AUG.EXPAND_MAX_RATIO = 4.0
    # Zoom in: a random crop whose IoU with some box is at least one of these (0 = any crop;
    # a choice of "no crop" is always included), with side between MIN_SCALE and 1.
    cfg.INPUT.SSD_AUG.CROP_MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)
    cfg.INPUT.SSD_AUG.CROP_MIN_SCALE = 0.3


def add_yolov3_config(cfg):
    """Add MODEL.YOLOV3 and MODEL.DARKNET to `cfg`; defaults are YOLOv3-608 (COCO anchors)."""
    cfg.MODEL.YOLOV3 = CN()
    # Number of classes; 0 = take it from the training dataset's metadata.
    cfg.MODEL.YOLOV3.NUM_CLASSES = 0
    # Backbone features, finest first (strides 8, 16, 32 for Darknet-53).
    cfg.MODEL.YOLOV3.IN_FEATURES = ["dark3", "dark4", "dark5"]
    # Anchors (width, height) in input pixels, one list of three per feature in IN_FEATURES.
    # Default: YOLOv3's COCO anchors; tools/compute_anchors.py fits them to a dataset.
    cfg.MODEL.YOLOV3.ANCHORS = [
        [[10, 13], [16, 30], [33, 23]],
        [[30, 61], [62, 45], [59, 119]],
        [[116, 90], [156, 198], [373, 326]],
    ]
    # Neck: channels of the 1x1 convs of the three detection blocks, coarsest first (the 3x3
    # convs have twice as many); YOLOv3: 512, 256, 128.
    cfg.MODEL.YOLOV3.NECK_CHANNELS = [512, 256, 128]
    # Normalisation in the neck (as MODEL.DARKNET.NORM).
    cfg.MODEL.YOLOV3.NORM = "BN"
    # A prediction whose box overlaps a ground-truth box by more than this IoU is not
    # penalised as background by the objectness loss.
    cfg.MODEL.YOLOV3.IGNORE_THRESH = 0.5
    # Box loss: "yolo" (the original: BCE on the centre offsets, squared error on log sizes,
    # weighted by 2 - w*h/image area) or "giou" (GIoU on decoded boxes).
    cfg.MODEL.YOLOV3.BOX_LOSS = "yolo"
    # Loss weights (box, objectness, classification).
    cfg.MODEL.YOLOV3.LOSS_WEIGHTS = (1.0, 1.0, 1.0)
    # Inference: score (objectness x class) threshold, (box, class) pairs kept per image before NMS,
    # class-wise NMS IoU threshold. Detections per image: TEST.DETECTIONS_PER_IMAGE.
    cfg.MODEL.YOLOV3.SCORE_THRESH_TEST = 0.005
    cfg.MODEL.YOLOV3.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.YOLOV3.NMS_THRESH_TEST = 0.45

    cfg.MODEL.DARKNET = CN()
    # Residual blocks of the five stages; Darknet-53: 1, 2, 8, 8, 4.
    cfg.MODEL.DARKNET.NUM_BLOCKS = [1, 2, 8, 8, 4]
    # Channels of the stem conv; stage k has STEM_OUT_CHANNELS * 2**(k+1) (Darknet-53: 32).
    cfg.MODEL.DARKNET.STEM_OUT_CHANNELS = 32
    # Normalisation after every conv: "BN" (Darknet), "GN", "SyncBN", "FrozenBN".
    cfg.MODEL.DARKNET.NORM = "BN"
    # Features returned: dark1 ... dark5 (strides 2 ... 32).
    cfg.MODEL.DARKNET.OUT_FEATURES = ["dark3", "dark4", "dark5"]
