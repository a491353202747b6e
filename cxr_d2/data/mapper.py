"""
Detectron2's DatasetMapper reading pixels through :func:`cxr_d2.data.dicom.read_image`, so a
dataset may list PNG, JPEG or DICOM files.

An image that cannot be read, or whose header states more pixels than
CXR.DATA.MAX_IMAGE_PIXELS, is reported as one line naming the file. In training it is
skipped (returning None makes Detectron2's MapDataset draw another image) and counted; in
testing it is an error, since an evaluation must see every image.
"""

import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as d2_utils
from detectron2.data import transforms as T

from ..errors import DatasetError
from .dicom import read_image
from .image_cache import ImageCache, cached_size
from .masks import mask_to_rle

__all__ = ["CXRDatasetMapper"]

logger = logging.getLogger(__name__)


class CXRDatasetMapper(DatasetMapper):
    """
    DatasetMapper with DICOM support and one-line reports of unreadable images.

    Attributes:
        skipped (int): images skipped in this process (training only).
    """

    @configurable
    def __init__(self, is_train=True, image_cache=None, **kwargs):
        """
        Args:
            image_cache (ImageCache or None): read decoded images through this cache.
            kwargs: DatasetMapper's arguments.
        """
        super().__init__(is_train, **kwargs)
        self.image_cache = image_cache
        self.skipped = 0

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return dict(super().from_config(cfg, is_train), image_cache=ImageCache.from_config(cfg))

    def _read(self, dataset_dict):
        """(H, W, C) uint8 image in `image_format`, size-checked; DatasetError if unusable.
        From a cache with MAX_SIZE it may be smaller than the record's size, by
        `cached_size`."""
        name = dataset_dict["file_name"]
        if self.image_cache is None:
            image = read_image(name, self.image_format)
        else:
            image = self.image_cache.read(name, self.image_format)
        expected = dataset_dict.get("height"), dataset_dict.get("width")
        if self.image_cache is not None and None not in expected:
            expected = cached_size(*expected, self.image_cache.max_size)
            dataset_dict = dict(dataset_dict, height=expected[0], width=expected[1])
        try:
            d2_utils.check_image_size(dataset_dict, image)
        except d2_utils.SizeMismatchError as e:
            raise DatasetError(f"{name}: {e}") from None
        return image

    @staticmethod
    def _to_cached_size(dataset_dict, image):
        """Scale the annotations of a record whose cached image is smaller than it."""
        height, width = dataset_dict["height"], dataset_dict["width"]
        if image.shape[:2] == (height, width) or "annotations" not in dataset_dict:
            return
        resize = T.ResizeTransform(height, width, image.shape[0], image.shape[1])
        annotations = []
        for ann in dataset_dict["annotations"]:
            ann = d2_utils.transform_instance_annotations(ann, [resize], image.shape[:2])
            if isinstance(ann.get("segmentation"), np.ndarray):  # an RLE, resized as a mask
                ann["segmentation"] = mask_to_rle(ann["segmentation"])
            annotations.append(ann)
        dataset_dict["annotations"] = annotations

    def _aug_input(self, image, dataset_dict):
        """What the augmentations see: the image alone (subclasses add boxes)."""
        return T.AugInput(image)

    def __call__(self, dataset_dict):
        """
        Args:
            dataset_dict (dict): one record in Detectron2's dataset format.

        Returns:
            dict: with "image" (uint8 tensor (C, H, W)) and, in training, "instances";
            None in training when the image cannot be read (reported and counted).
        """
        dataset_dict = copy.deepcopy(dataset_dict)
        try:
            image = self._read(dataset_dict)
        except DatasetError as e:
            if not self.is_train:
                raise
            self.skipped += 1
            logger.warning(f"skipped image ({self.skipped} so far in this process): {e}")
            return None
        if self.is_train and dataset_dict.get("height"):
            self._to_cached_size(dataset_dict, image)
        aug_input = self._aug_input(image, dataset_dict)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]  # h, w
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if self.proposal_topk is not None:
            d2_utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
