"""SipMask-VIS: tracking branch, matching, pair/sequence data, YouTube-VIS evaluation."""

from .evaluator import VISEvaluator, ground_truth_vis, sequence_tracks
from .mapper import VISPairMapper, VISSequenceMapper, frame_record, key_frames
from .matching import TrackMemory, assign_ids, comprehensive_scores
from .sipmask_vis import SipMaskVIS
from .track_head import TrackHead, track_vectors
from .track_loss import jitter_boxes, reference_targets, tracking_loss
from .trainer import VISTrainer

__all__ = [
    "SipMaskVIS",
    "TrackHead",
    "TrackMemory",
    "VISEvaluator",
    "VISPairMapper",
    "VISSequenceMapper",
    "VISTrainer",
    "assign_ids",
    "comprehensive_scores",
    "frame_record",
    "ground_truth_vis",
    "jitter_boxes",
    "key_frames",
    "reference_targets",
    "sequence_tracks",
    "track_vectors",
    "tracking_loss",
]
