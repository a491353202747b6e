"""SipMask-VIS (Cao et al., ECCV 2020, Sec. 3.4): SipMask plus a tracking branch."""

import logging

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList
from detectron2.utils.events import get_event_storage

from cxr_d2.errors import ConfigError

from ..sipmask import SipMask
from .matching import TrackMemory
from .track_head import TrackHead, track_vectors
from .track_loss import jitter_boxes, reference_targets, tracking_loss

__all__ = ["SipMaskVIS"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class SipMaskVIS(SipMask):
    """
    SipMask with a tracking branch (:class:`TrackHead`) whose map gives one vector per
    instance at its box centre.

    Training takes pairs of frames of one sequence (:class:`VISPairMapper`): a key frame
    ("image", "instances" with gt_ids) and a reference frame ("ref_image", "ref_instances").
    Both go through the backbone; the key frame gets SipMask's losses, and loss_track
    (MaskTrack R-CNN's): each key positive's vector, at its predicted box centre, is classified
    among the reference frame's objects (vectors at their jittered ground-truth box centres)
    and "new".

    Inference on a sequence (an input with "frames", :class:`VISSequenceMapper`) runs frame by
    frame, matching each frame's detections to a memory of identities
    (:class:`TrackMemory`); an input with "image" gets SipMask's inference.
    """

    @configurable
    def __init__(
        self,
        *,
        track_head: TrackHead,
        track_in_levels,
        track_stride: int,
        match_weights=(1.0, 2.0, 10.0),
        track_loss_weight=1.0,
        ref_box_jitter=0.05,
        **kwargs,
    ):
        """
        Args:
            track_head: maps the levels `track_in_levels` (indices into the head's input
                features) to the tracking feature map, whose cells are `track_stride` pixels.
            match_weights: (w_score, w_iou, w_label) of the matching (:class:`TrackMemory`).
            track_loss_weight: weight of loss_track.
            ref_box_jitter: amplitude of the reference boxes' jitter in training.
            kwargs: arguments of :class:`SipMask`.
        """
        super().__init__(**kwargs)
        self.track_head = track_head
        self.track_in_levels = list(track_in_levels)
        self.track_stride = track_stride
        self.match_weights = tuple(match_weights)
        self.track_loss_weight = track_loss_weight
        self.ref_box_jitter = ref_box_jitter

    @classmethod
    def from_config(cls, cfg):
        kwargs = super().from_config(cfg)
        t = cfg.MODEL.SIPMASK.TRACK
        names = list(cfg.MODEL.FCOS.IN_FEATURES)
        bad = [k for k in t.IN_FEATURES if k not in names]
        if bad or not t.IN_FEATURES:
            raise ConfigError(
                f"MODEL.SIPMASK.TRACK.IN_FEATURES {list(t.IN_FEATURES)} must be a non-empty "
                f"subset of MODEL.FCOS.IN_FEATURES {names}"
            )
        if len(t.MATCH_WEIGHTS) != 3:
            raise ConfigError(
                f"MODEL.SIPMASK.TRACK.MATCH_WEIGHTS is {list(t.MATCH_WEIGHTS)}; give the three "
                "weights of log(score), box IoU and class agreement, e.g. [1.0, 2.0, 10.0]"
            )
        shapes = kwargs["backbone"].output_shape()
        kwargs.update(
            track_head=TrackHead(cfg, [shapes[k] for k in t.IN_FEATURES]),
            track_in_levels=[names.index(k) for k in t.IN_FEATURES],
            track_stride=shapes[t.IN_FEATURES[0]].stride,
            match_weights=tuple(t.MATCH_WEIGHTS),
            track_loss_weight=t.LOSS_WEIGHT,
            ref_box_jitter=t.REF_BOX_JITTER,
        )
        return kwargs

    def track_map(self, features):
        """(N, E, H0, W0) tracking maps from the head's input features (list per level)."""
        return self.track_head([features[i] for i in self.track_in_levels])

    def forward(self, batched_inputs):
        """
        Training: a list of pairs (see the class docstring) -> dict of losses. Inference: per
        sequence input {"video_id", "frames": [{"image", "height", "width"}, ...]} ->
        {"video_id", "frames": [{"instances"}, ...]}, each frame's Instances with `track_ids`
        (0, 1, ... in order of appearance); per image input, SipMask's output.
        """
        if self.training:
            return self.forward_pairs(batched_inputs)
        if "frames" in batched_inputs[0]:
            return [self.track_sequence(x) for x in batched_inputs]
        return super().forward(batched_inputs)

    def forward_pairs(self, batched_inputs):
        n = len(batched_inputs)
        images = self.preprocess_image(
            list(batched_inputs) + [{"image": x["ref_image"]} for x in batched_inputs]
        )
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        key_images = ImageList(images.tensor[:n], images.image_sizes[:n])
        key_features = [f[:n] for f in features]
        predictions = self.head(key_features)
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        ref_gt = [x["ref_instances"].to(self.device) for x in batched_inputs]
        losses = self.forward_training(key_images, key_features, predictions, gt)
        maps = self.track_map(features)
        loss = self.track_loss(key_features, predictions, gt, ref_gt, maps[:n], maps[n:])
        losses["loss_track"] = loss * self.track_loss_weight
        return losses

    def track_loss(self, features, predictions, gt, ref_gt, key_maps, ref_maps):
        """
        Args:
            features: the key frames' head input features; predictions: the head's output.
            gt, ref_gt: per pair, the key and reference frames' Instances (gt_boxes, gt_ids).
            key_maps, ref_maps: (N, E, H0, W0) their tracking maps.
        Returns:
            scalar: the mean over the pairs with positives of :func:`tracking_loss`.
        """
        anchors = self.anchor_generator(features)
        matched = self.match_anchors(anchors, gt)
        anchors = Boxes.cat(anchors).tensor
        deltas = cat(self._split(predictions)[1], dim=1)  # (N, R, 4)
        losses, correct, total = [], 0, 0
        for i, idx in enumerate(matched):
            pos = torch.nonzero(idx >= 0).squeeze(1)
            if len(pos) == 0:
                continue
            boxes = self.box2box_transform.apply_deltas(deltas[i, pos], anchors[pos]).detach()
            key = track_vectors(key_maps[i], boxes, self.track_stride)
            ref_boxes = jitter_boxes(ref_gt[i].gt_boxes.tensor, self.ref_box_jitter)
            ref = track_vectors(ref_maps[i], ref_boxes, self.track_stride)
            targets = reference_targets(gt[i].gt_ids[idx[pos]], ref_gt[i].gt_ids)
            loss, predicted = tracking_loss(key, ref, targets)
            losses.append(loss)
            correct += int((predicted == targets).sum())
            total += len(targets)
        if not losses:
            return key_maps.sum() * 0 + ref_maps.sum() * 0
        get_event_storage().put_scalar("sipmask_vis/track_accuracy", correct / total)
        return sum(losses) / len(losses)

    @torch.no_grad()
    def track_sequence(self, sequence):
        """
        Args:
            sequence: {"video_id", "frames": [{"image": (C, H, W), "height", "width"}, ...]},
                every frame of one size.
        Returns:
            {"video_id", "frames": [{"instances": Instances at (height, width) with
            pred_boxes, scores, pred_classes, pred_masks, track_ids}, ...]}.
        """
        memory = TrackMemory(self.match_weights)
        frames = []
        for frame in sequence["frames"]:
            images = self.preprocess_image([frame])
            features = self.backbone(images.tensor)
            features = [features[f] for f in self.head_in_features]
            r = self.forward_inference(images, features, self.head(features))[0]
            embeds = track_vectors(
                self.track_map(features)[0], r.pred_boxes.tensor, self.track_stride
            )
            ids = memory.update(embeds, r.pred_boxes.tensor, r.scores, r.pred_classes)
            r = r[ids >= 0]
            r.track_ids = ids[ids >= 0]
            r.keep_index = torch.arange(len(r), device=ids.device)
            image_size = images.image_sizes[0]
            track_ids = r.track_ids
            out = self._to_output(
                r, image_size, frame.get("height", image_size[0]), frame.get("width", image_size[1])
            )
            if not out.has("track_ids"):  # the official path rebuilds the Instances
                out.track_ids = track_ids
            frames.append({"instances": out})
        return {"video_id": sequence.get("video_id"), "frames": frames}
