"""The SSD and YOLOv3 CPU configs, and overrides that shrink them for the tiny phantom set."""
import os

__all__ = ["CONFIGS", "TINY_MODEL"]

CONFIGS = {
    "ssd": os.path.join("configs", "Phantom", "ssd_VGG16_cpu.yaml"),
    "yolov3": os.path.join("configs", "Phantom", "yolov3_DarkNet53_cpu.yaml"),
}
# The CPU configs made smaller still for 128 px films: few channels, sources at strides 8-64
# (SSD) and anchors for the tiny phantom's 7-45 px lesions.
TINY_MODEL = {
    "ssd": [
        "MODEL.VGG.STAGE_CHANNELS",
        "[8, 16, 32, 32, 32]",
        "MODEL.VGG.FC_CHANNELS",
        "64",
        "MODEL.VGG.EXTRA_LAYERS",
        "[[32, 64, 3, 2, 1], [32, 64, 3, 2, 1]]",
        "MODEL.SSD.PRIOR.MIN_SIZES",
        "[8.0, 14.0, 24.0, 40.0]",
        "MODEL.SSD.PRIOR.MAX_SIZES",
        "[14.0, 24.0, 40.0, 64.0]",
    ],
    "yolov3": [
        "MODEL.DARKNET.NUM_BLOCKS",
        "[1, 1, 1, 1, 1]",
        "MODEL.DARKNET.STEM_OUT_CHANNELS",
        "8",
        "MODEL.YOLOV3.NECK_CHANNELS",
        "[64, 32, 16]",
        "MODEL.YOLOV3.ANCHORS",
        "[[[7, 7], [9, 10], [10, 13]], [[13, 12], [15, 16], [20, 21]], [[36, 20], [38, 26], [38, 38]]]",
    ],
}
