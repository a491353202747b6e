"""SSD's training augmentations (photometric distortion, expand, min-IoU crop) for Detectron2."""

import cv2
import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.structures import Boxes, pairwise_iou
from fvcore.transforms.transform import CropTransform, NoOpTransform, PadTransform

__all__ = ["RandomPhotometricDistort", "RandomExpand", "MinIoURandomCrop", "build_ssd_augmentation"]


def _distort(image, brightness, contrast, contrast_first, saturation, hue):
    """Apply SSD's photometric distortion with fixed parameters to an HxWx3 image (0-255)."""
    dtype = image.dtype
    img = image.astype(np.float32) + brightness
    if contrast_first:
        img = img * contrast
    img = np.clip(img, 0, 255)
    if saturation != 1.0 or hue != 0.0:
        gray = img.mean(axis=2, keepdims=True)
        img = np.clip(gray + (img - gray) * saturation, 0, 255)
        if hue != 0.0:
            hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
            hsv[..., 0] = (hsv[..., 0] + hue / 2.0) % 180  # OpenCV hue is degrees / 2
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first:
        img = np.clip(img * contrast, 0, 255)
    return img.astype(dtype) if dtype == np.uint8 else img


class RandomPhotometricDistort(T.Augmentation):
    """
    SSD's photometric distortion, each step with probability `prob`: additive brightness in
    [-delta, delta], contrast factor (before or after the colour steps, at random), saturation
    factor, hue shift in degrees. Boxes are unchanged.
    """

    def __init__(
        self,
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
        prob=0.5,
    ):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        def maybe(value, identity):
            return value if self._rand_range() < self.prob else identity

        params = dict(
            brightness=maybe(np.random.uniform(-self.brightness_delta, self.brightness_delta), 0.0),
            contrast=maybe(np.random.uniform(*self.contrast_range), 1.0),
            contrast_first=bool(np.random.rand() < 0.5),
            saturation=maybe(np.random.uniform(*self.saturation_range), 1.0),
            hue=maybe(np.random.uniform(-self.hue_delta, self.hue_delta), 0.0),
        )
        return T.ColorTransform(lambda img: _distort(img, **params))


class RandomExpand(T.Augmentation):
    """
    SSD's "zoom out": with probability `prob`, place the image at a random position on a canvas
    `ratio` in [1, max_ratio] times its size, filled with `fill` (the pixel mean).
    """

    def __init__(self, max_ratio=4.0, prob=0.5, fill=0.0):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        if self._rand_range() >= self.prob or self.max_ratio <= 1:
            return NoOpTransform()
        h, w = image.shape[:2]
        ratio = np.random.uniform(1, self.max_ratio)
        new_w, new_h = int(w * ratio), int(h * ratio)
        left, top = np.random.randint(0, new_w - w + 1), np.random.randint(0, new_h - h + 1)
        return PadTransform(left, top, new_w - w - left, new_h - h - top, w, h, pad_value=self.fill)


class MinIoURandomCrop(T.Augmentation):
    """
    SSD's "zoom in": choose a mode among "no crop" and each minimum IoU in `min_ious`; for a
    minimum IoU, try up to `max_trials` crops of side in [min_scale, 1] of the image and aspect
    ratio in [0.5, 2] until one overlaps some box by at least that IoU and holds a box centre
    (Caffe SSD's rule); keep the image if none does. Boxes are then clipped to the crop by the
    mapper and boxes left empty are removed (Detectron2's `filter_empty_instances`).
    """

    def __init__(self, min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_scale=0.3, max_trials=50):
        super().__init__()
        self._init(locals())

    def get_transform(self, image, boxes):
        h, w = image.shape[:2]
        modes = (None,) + tuple(self.min_ious)
        mode = modes[np.random.randint(len(modes))]
        if mode is None or boxes is None or len(boxes) == 0:
            return NoOpTransform()
        gt = Boxes(torch.as_tensor(np.asarray(boxes), dtype=torch.float32))
        centres = gt.get_centers().numpy()
        for _ in range(self.max_trials):
            cw, ch = np.random.uniform(self.min_scale * w, w), np.random.uniform(
                self.min_scale * h, h
            )
            if not 0.5 <= ch / cw <= 2:
                continue
            x0, y0 = np.random.uniform(0, w - cw), np.random.uniform(0, h - ch)
            crop = [int(x0), int(y0), int(x0 + cw), int(y0 + ch)]
            if crop[2] <= crop[0] or crop[3] <= crop[1]:
                continue
            iou = pairwise_iou(Boxes(torch.tensor([crop], dtype=torch.float32)), gt)[0].numpy()
            inside = (
                (centres[:, 0] > crop[0])
                & (centres[:, 0] < crop[2])
                & (centres[:, 1] > crop[1])
                & (centres[:, 1] < crop[3])
            )
            if iou.max() >= mode and inside.any():
                return CropTransform(crop[0], crop[1], crop[2] - crop[0], crop[3] - crop[1], w, h)
        return NoOpTransform()


def build_ssd_augmentation(cfg, is_train):
    """
    SSD's training pipeline from INPUT.SSD_AUG: photometric distortion, expand, min-IoU crop,
    resize to SIZE x SIZE, horizontal flip. At test time Detectron2's default resize.
    """
    from detectron2.data.detection_utils import build_augmentation

    if not is_train:
        return build_augmentation(cfg, is_train)
    a = cfg.INPUT.SSD_AUG
    return [
        RandomPhotometricDistort(
            a.BRIGHTNESS_DELTA, tuple(a.CONTRAST_RANGE), tuple(a.SATURATION_RANGE), a.HUE_DELTA
        ),
        RandomExpand(a.EXPAND_MAX_RATIO, a.EXPAND_PROB, fill=float(np.mean(cfg.MODEL.PIXEL_MEAN))),
        MinIoURandomCrop(tuple(a.CROP_MIN_IOUS), a.CROP_MIN_SCALE),
        T.Resize((a.SIZE, a.SIZE)),
        T.RandomFlip(horizontal=True, vertical=False),
    ]
