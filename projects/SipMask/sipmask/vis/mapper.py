"""
Sequence data for SipMask-VIS: (key, reference) frame pairs for training and whole sequences
for inference, from the sequence dicts of `cxr_d2.data.datasets.youtube_vis` (one dict per
sequence: "file_names", "height", "width", "annotations" = per frame a list of instances with
a track "id").
"""

import copy
import logging
import random

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as d2_utils

from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.errors import DatasetError

__all__ = ["key_frames", "frame_record", "VISPairMapper", "VISSequenceMapper"]

logger = logging.getLogger(__name__)


def _annotated(instances):
    return any(not a.get("iscrowd", 0) for a in instances)


def key_frames(sequences):
    """
    The training items: one {"sequence", "frame", "height", "width"} per frame holding a
    non-crowd instance, so key frames are drawn uniformly over annotated frames (as the official
    YTVOSDataset draws them).
    """
    return [
        {"sequence": s, "frame": t, "height": s["height"], "width": s["width"]}
        for s in sequences
        for t, instances in enumerate(s["annotations"])
        if _annotated(instances)
    ]


def frame_record(sequence, t):
    """Frame `t` of `sequence` as an image record of Detectron2's format (annotations copied)."""
    return {
        "file_name": sequence["file_names"][t],
        "height": sequence["height"],
        "width": sequence["width"],
        "annotations": copy.deepcopy(sequence.get("annotations", [[]] * (t + 1))[t]),
    }


class VISPairMapper(CXRDatasetMapper):
    """
    A key frame and a reference frame of one sequence, under one augmentation: the key frame's
    augmentation is drawn, and the same transforms are applied to the reference frame. The
    reference is drawn uniformly among the sequence's other annotated frames (the official
    `sample_ref`), or the other frames when none is annotated (the key frame itself for a
    one-frame sequence).

    Returns {"image", "instances", "ref_image", "ref_instances", "height", "width",
    "file_name", "ref_file_name"}: images (C, H, W) uint8; instances with gt_boxes,
    gt_classes, gt_masks and gt_ids (each track's index in the sequence, in order of first
    appearance); None when a frame cannot be read (reported and counted, as the parent).
    """

    @configurable
    def __init__(self, is_train=True, **kwargs):
        super().__init__(is_train, **kwargs)

    def _instances(self, annotations, transforms, image_shape, track_index):
        annos = [
            d2_utils.transform_instance_annotations(a, transforms, image_shape)
            for a in annotations
            if not a.get("iscrowd", 0)
        ]
        for a in annos:
            if not self.use_instance_mask:
                a.pop("segmentation", None)
        instances = d2_utils.annotations_to_instances(
            annos, image_shape, mask_format=self.instance_mask_format
        )
        instances.gt_ids = torch.tensor([track_index[a["id"]] for a in annos], dtype=torch.long)
        if self.recompute_boxes:
            instances.gt_boxes = instances.gt_masks.get_bounding_boxes()
        return d2_utils.filter_empty_instances(instances)

    @staticmethod
    def _reference(sequence, t):
        others = [u for u in range(len(sequence["file_names"])) if u != t]
        annotated = [u for u in others if _annotated(sequence["annotations"][u])]
        return random.choice(annotated or others or [t])

    def __call__(self, item):
        """item: {"sequence", "frame"} (:func:`key_frames`)."""
        sequence, t = item["sequence"], item["frame"]
        u = self._reference(sequence, t)
        key, ref = frame_record(sequence, t), frame_record(sequence, u)
        try:
            key_image, ref_image = self._read(key), self._read(ref)
        except DatasetError as e:
            self.skipped += 1
            logger.warning(f"skipped frame pair ({self.skipped} so far in this process): {e}")
            return None
        aug_input = self._aug_input(key_image, key)
        transforms = self.augmentations(aug_input)
        key_image = aug_input.image
        ref_image = transforms.apply_image(ref_image)
        shape = key_image.shape[:2]
        track_index = {}
        for frame in sequence["annotations"]:
            for a in frame:
                track_index.setdefault(a["id"], len(track_index))
        return {
            "file_name": key["file_name"],
            "ref_file_name": ref["file_name"],
            "height": key["height"],
            "width": key["width"],
            "image": _to_tensor(key_image),
            "ref_image": _to_tensor(ref_image),
            "instances": self._instances(key["annotations"], transforms, shape, track_index),
            "ref_instances": self._instances(ref["annotations"], transforms, shape, track_index),
        }


class VISSequenceMapper(CXRDatasetMapper):
    """
    Every frame of a sequence, each under the test augmentation (resizing), for
    :meth:`SipMaskVIS.track_sequence`. An unreadable frame is a DatasetError naming it.

    Returns {"video_id", "height", "width", "length", "frames": [{"image", "height", "width",
    "file_name"}, ...]}.
    """

    @configurable
    def __init__(self, is_train=False, **kwargs):
        super().__init__(is_train, **kwargs)

    @classmethod
    def from_config(cls, cfg, is_train=False):
        return super().from_config(cfg, is_train)

    def __call__(self, sequence):
        frames = []
        for t, name in enumerate(sequence["file_names"]):
            record = frame_record(sequence, t)
            image = self._read(record)
            aug_input = self._aug_input(image, record)
            self.augmentations(aug_input)
            frames.append(
                {
                    "file_name": name,
                    "height": sequence["height"],
                    "width": sequence["width"],
                    "image": _to_tensor(aug_input.image),
                }
            )
        return {
            "video_id": sequence["video_id"],
            "height": sequence["height"],
            "width": sequence["width"],
            "length": len(frames),
            "frames": frames,
        }


def _to_tensor(image):
    """(H, W, C) array -> (C, H, W) tensor."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
