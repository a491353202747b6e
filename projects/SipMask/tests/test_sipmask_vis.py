"""SipMask-VIS: tracking branch, matching, tracking loss, pair mapper, evaluator, one step."""

import json
import math
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage
from sipmask import add_sipmask_config
from sipmask.vis import (
    TrackMemory,
    VISEvaluator,
    VISPairMapper,
    VISSequenceMapper,
    assign_ids,
    comprehensive_scores,
    ground_truth_vis,
    jitter_boxes,
    key_frames,
    reference_targets,
    sequence_tracks,
    track_vectors,
    tracking_loss,
)

from cxr_d2.config import add_cxr_config
from cxr_d2.data.masks import mask_to_box
from cxr_d2.engine import Trainer, check_config
from tests.conftest import one_thread  # noqa: F401

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
CONFIG = os.path.join(
    ROOT, "projects", "SipMask", "configs", "vis", "sipmask_vis_R_18_FPN_cpu.yaml"
)
SEQS = "sipmask_vis_test_seqs"
CLASSES = ["disc", "square"]
SMALL = [
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.SIPMASK.NUM_BASIS", "8",
    "MODEL.SIPMASK.BASIS_CONV_DIM", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.SIPMASK.TRACK.EMBED_DIM", "32",
    "MODEL.SIPMASK.TRACK.NUM_CONVS", "1",
    "DATASETS.TRAIN", f"('{SEQS}',)", "DATASETS.TEST", f"('{SEQS}',)",
    "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", "1", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000",
]  # fmt: skip


def _rle(mask):
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def make_sequences(root, num=2, length=3, size=128, seed=0):
    """
    Sequence dicts (the youtube_vis loader's format) of bright discs (class 0) and squares
    (class 1) drifting over noise, written as PNGs under `root`. Track ids are strings
    "<sequence>-<object>"; object 1 of each sequence is absent from the first frame.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    sequences = []
    for v in range(num):
        objects = [(k % 2, *rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.1, 0.15) * size,
                    *rng.uniform(-3, 3, 2)) for k in range(2)]  # fmt: skip
        names, frames = [], []
        for t in range(length):
            image = rng.normal(40, 5, (size, size))
            instances = []
            for k, (cls, cx, cy, r, vx, vy) in enumerate(objects):
                if k == 1 and t == 0:
                    continue
                x, y = cx + vx * t, cy + vy * t
                if cls == 0:
                    mask = (xx - x) ** 2 + (yy - y) ** 2 <= r**2
                else:
                    mask = (abs(xx - x) <= r) & (abs(yy - y) <= r)
                image[mask] = 200 if cls == 0 else 120
                instances.append({"id": f"{v}-{k}", "category_id": cls,
                                  "bbox": mask_to_box(mask), "bbox_mode": BoxMode.XYXY_ABS,
                                  "segmentation": _rle(mask), "iscrowd": 0})  # fmt: skip
            name = os.path.join(root, f"seq{v}_{t}.png")
            cv2.imwrite(name, np.clip(image, 0, 255).astype(np.uint8))
            names.append(name)
            frames.append(instances)
        sequences.append({"video_id": v + 1, "file_names": names, "height": size, "width": size,
                          "length": length, "annotations": frames})  # fmt: skip
    return sequences


@pytest.fixture
def sequences(tmp_path):
    seqs = make_sequences(str(tmp_path))
    DatasetCatalog.register(SEQS, lambda: seqs)
    MetadataCatalog.get(SEQS).set(thing_classes=CLASSES, evaluator_type="youtube_vis")
    yield seqs
    DatasetCatalog.remove(SEQS)
    MetadataCatalog.remove(SEQS)


def _cfg(output_dir, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["OUTPUT_DIR", str(output_dir), *opts])
    check_config(cfg)
    return cfg


def test_track_vectors_at_box_centres_by_hand():
    track_map = torch.arange(2 * 4 * 5, dtype=torch.float).view(2, 4, 5)  # (E, H, W), stride 8
    boxes = torch.tensor(
        [
            [0.0, 0.0, 16.0, 16.0],  # centre (8, 8) -> cell (x 1, y 1)
            [20.0, 2.0, 30.0, 20.0],  # centre (25, 11) -> cell (3, 1)
            [60.0, 40.0, 90.0, 50.0],
        ]
    )  # centre (75, 45) -> (9, 5) clamped (4, 3)
    out = track_vectors(track_map, boxes, 8)
    expected = [[track_map[e, y, x].item() for e in range(2)] for x, y in ((1, 1), (3, 1), (4, 3))]
    assert out.tolist() == expected


def test_branch_shapes_and_gradients_reach_track_convs(tmp_path, sequences, one_thread):
    cfg = _cfg(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = VISPairMapper(cfg)
    batch = [mapper(x) for x in key_frames(sequences)[1:2]]
    images = model.preprocess_image(batch)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    maps = model.track_map(features)
    assert maps.shape == (1, 32, 16, 16)  # 128 px at stride 8 (P3), 32-d vectors
    assert model.track_stride == 8
    model.train()
    with EventStorage():
        losses = model(batch)
    assert {"loss_track", "loss_mask", "loss_fcos_cls"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_track"].backward()
    for p in (model.track_head.convs[0].weight, model.track_head.fuse.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.head.cls_logits.weight.grad is None  # the tracking loss trains the branch only
    assert model.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0  # and the backbone


def test_matching_recovers_a_permutation():
    memory = TrackMemory((1.0, 2.0, 10.0))
    embeds = torch.eye(3) * 5
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]])
    labels = torch.tensor([0, 0, 0])
    assert memory.update(embeds, boxes, torch.ones(3), labels).tolist() == [0, 1, 2]
    perm = [2, 0, 1]
    ids = memory.update(embeds[perm], boxes[perm] + 1, torch.full((3,), 0.9), labels)
    assert ids.tolist() == perm
    assert torch.equal(memory.boxes, boxes + 1)  # matched identities take the new boxes


def test_low_similarity_opens_a_new_identity():
    memory = TrackMemory((1.0, 2.0, 10.0))
    memory.update(
        torch.tensor([[5.0, 0.0]]),
        torch.tensor([[0.0, 0, 10, 10]]),
        torch.ones(1),
        torch.tensor([1]),
    )
    # dissimilar (e.m = -5 < 0 of "new"), far away, same class: new identity 1
    ids = memory.update(
        torch.tensor([[-1.0, 0.0], [4.0, 0.0]]),
        torch.tensor([[80.0, 80, 90, 90], [1.0, 1, 11, 11]]),
        torch.tensor([0.8, 0.7]),
        torch.tensor([1, 1]),
    )
    assert ids.tolist() == [1, 0]
    assert len(memory) == 2 and memory.labels.tolist() == [1, 1]


def test_weights_change_the_choice_as_computed_by_hand():
    # one detection, two stored identities: similarities 5 and 2; IoU 0 and 0.9; class
    # agreement no and yes; score 0.5
    embeds = torch.tensor([[1.0, 0.0]])
    memory = torch.tensor([[5.0, 0.0], [2.0, 0.0]])
    ious = torch.tensor([[0.0, 0.9]])
    same = torch.tensor([[False, True]])
    score = torch.tensor([0.5])
    lse = math.log(math.exp(0) + math.exp(5) + math.exp(2))
    cases = {  # weights: (hand-computed [new, id 0, id 1], chosen column)
        (1.0, 2.0, 10.0): ([0 - lse + math.log(0.5) + 10, 5 - lse + math.log(0.5),
                            2 - lse + math.log(0.5) + 1.8 + 10], 2),
        (1.0, 0.0, 0.0): ([-lse + math.log(0.5), 5 - lse + math.log(0.5),
                           2 - lse + math.log(0.5)], 1),
        (0.0, 4.0, 0.0): ([-lse, 5 - lse, 2 - lse + 3.6], 2),
        (0.0, 2.0, 0.0): ([-lse, 5 - lse, 2 - lse + 1.8], 1),
    }  # fmt: skip
    for weights, (expected, column) in cases.items():
        comp = comprehensive_scores(embeds, memory, score, ious, same, weights)
        assert comp[0].tolist() == pytest.approx(expected, abs=1e-5), weights
        assert assign_ids(comp).tolist() == [column - 1], weights


def test_conflict_keeps_the_best_detection():
    comp = torch.tensor([[0.0, 3.0, 1.0], [0.0, 4.0, 1.0], [5.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    # detections 0 and 1 both take identity 0: 1 (4 > 3) keeps it; 2 is new; 3 takes identity 1
    assert assign_ids(comp).tolist() == [-1, 0, -2, 1]


def test_tracking_loss_by_hand():
    key = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]])
    ref = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    key_ids, ref_ids = torch.tensor([7, 9, 8]), torch.tensor([8, 7])
    targets = reference_targets(key_ids, ref_ids)
    assert targets.tolist() == [2, 0, 1]  # 7 is ref[1], 9 absent, 8 is ref[0]
    loss, predicted = tracking_loss(key, ref, targets)
    expected = 0.0
    for k, target in zip(key.tolist(), targets.tolist()):
        logits = [0.0] + [k[0] * r[0] + k[1] * r[1] for r in ref.tolist()]
        expected -= logits[target] - math.log(sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(expected / 3, rel=1e-6)
    assert predicted.tolist() == [2, 1, 2]  # argmax of [0, 5, 2], [0, 1, -0.5], [0, 0, 1]


def test_reference_box_jitter_bounds():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 40.0]]).repeat(200, 1)
    out = jitter_boxes(boxes, 0.05, generator=torch.Generator().manual_seed(0))
    ctr, wh = (out[:, :2] + out[:, 2:]) / 2, out[:, 2:] - out[:, :2]
    size = torch.tensor([40.0, 20.0])
    assert ((ctr - torch.tensor([30.0, 30.0])).abs() <= 0.05 * size + 1e-4).all()
    assert ((wh / size - 1).abs() <= 0.05 + 1e-5).all()
    assert torch.equal(jitter_boxes(boxes[:3], 0.0), boxes[:3])


def test_pair_mapper_applies_one_transform_to_both_frames(tmp_path):
    seq = make_sequences(str(tmp_path), num=1, length=3)[0]
    mapper = VISPairMapper(
        is_train=True,
        augmentations=[T.RandomFlip(0.5)],
        image_format="BGR",
        use_instance_mask=True,
        instance_mask_format="bitmask",
    )
    raw = [cv2.imread(f) for f in seq["file_names"]]  # BGR, as the mapper reads
    flips = set()
    for _ in range(12):
        out = mapper({"sequence": seq, "frame": 1})
        key = out["image"].permute(1, 2, 0).numpy()
        ref_t = seq["file_names"].index(out["ref_file_name"])
        ref = out["ref_image"].permute(1, 2, 0).numpy()
        assert ref_t != 1
        flipped = not np.array_equal(key, raw[1])
        assert np.array_equal(key, raw[1][:, ::-1] if flipped else raw[1])
        assert np.array_equal(ref, raw[ref_t][:, ::-1] if flipped else raw[ref_t])
        flips.add(flipped)
        # one identity numbering for both frames: "0-0" -> 0, "0-1" -> 1 (first seen in frame 1)
        assert out["instances"].gt_ids.tolist() == [0, 1]
        assert out["ref_instances"].gt_ids.tolist() == ([0] if ref_t == 0 else [0, 1])
        box = out["instances"].gt_boxes.tensor[0]
        x1, y1, x2, y2 = seq["annotations"][1][0]["bbox"]
        assert box.tolist() == ([128 - x2, y1, 128 - x1, y2] if flipped else [x1, y1, x2, y2])
    assert flips == {True, False}
    assert [x["frame"] for x in key_frames([seq])] == [0, 1, 2]


def _as_predictions(seq, swap_at=None):
    """Per frame Instances equal to the ground truth; with `swap_at`, the two objects' track
    ids are exchanged from that frame on."""
    frames = []
    for t, instances in enumerate(seq["annotations"]):
        masks = np.stack([mask_util.decode(a["segmentation"]) for a in instances]).astype(bool)
        ids = [int(a["id"].split("-")[1]) for a in instances]
        if swap_at is not None and t >= swap_at:
            ids = [1 - i for i in ids]
        r = Instances((seq["height"], seq["width"]))
        r.pred_masks = torch.from_numpy(masks)
        r.scores = torch.tensor([0.9 - 0.1 * t] * len(ids))
        r.pred_classes = torch.tensor([a["category_id"] for a in instances])
        r.track_ids = torch.tensor(ids)
        frames.append(r)
    return frames


def _output(seq, swap_at=None):
    return {"frames": [{"instances": r} for r in _as_predictions(seq, swap_at)]}


def test_tracks_assembled_as_the_official_results2json(tmp_path):
    seq = make_sequences(str(tmp_path), num=1, length=3)[0]
    frames = _as_predictions(seq)
    frames[2].pred_classes = torch.tensor([1, 1])  # object 0 voted class 0 twice, 1 once
    tracks = sequence_tracks(7, frames)
    assert [t["track_id"] for t in tracks] == [0, 1]
    assert tracks[0]["category_id"] == 0 and tracks[1]["category_id"] == 1
    assert tracks[0]["score"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert tracks[1]["score"] == pytest.approx((0.8 + 0.7) / 2)
    assert tracks[1]["segmentations"][0] is None and tracks[1]["segmentations"][1] is not None
    assert all(t["video_id"] == 7 for t in tracks)


def test_evaluator_scores_perfect_and_switched_tracks(tmp_path, sequences):
    evaluator = VISEvaluator(SEQS, str(tmp_path / "eval"), distributed=False)
    inputs = [{"video_id": s["video_id"]} for s in sequences]
    evaluator.reset()
    evaluator.process(inputs, [_output(s) for s in sequences])
    perfect = evaluator.evaluate()["vis"]
    assert perfect["AP"] == pytest.approx(100) and perfect["id_switches"] == 0
    assert perfect["frame_AP"] == pytest.approx(100)
    assert os.path.isfile(tmp_path / "eval" / "vis_results.json")
    evaluator.reset()
    # identities swapped from the last frame: masks per frame still right, tracks are not
    evaluator.process(inputs, [_output(s, swap_at=2) for s in sequences])
    switched = evaluator.evaluate()["vis"]
    assert switched["id_switches"] == 2  # one per sequence
    # a track's class is its majority vote: the swapped frame's disc is called a square
    assert switched["AP"] < 100 and switched["frame_AP"] < 100
    gt = ground_truth_vis(sequences, CLASSES)
    assert len(gt["annotations"]) == 4 and gt["annotations"][1]["segmentations"][0] is None


def test_one_training_step_and_sequence_evaluation(tmp_path, sequences, one_thread):
    cfg = _cfg(tmp_path)
    cfg.freeze()
    trainer = Trainer(cfg)  # cxr-d2's Trainer defers data and evaluation to VISTrainer
    trainer.resume_or_load(resume=False)
    trainer.train()
    history = trainer.storage.histories()
    assert np.isfinite(history["loss_track"].latest())
    assert 0 <= history["sipmask_vis/track_accuracy"].latest() <= 1
    model = trainer.model.eval()
    loader = Trainer.build_test_loader(cfg, SEQS)
    batch = next(iter(loader))
    assert len(batch) == 1 and len(batch[0]["frames"]) == 3
    out = model(batch)[0]
    assert out["video_id"] == 1 and len(out["frames"]) == 3
    for f in out["frames"]:
        inst = f["instances"]
        assert inst.pred_masks.shape[1:] == (128, 128)
        assert len(inst) <= 10 and (inst.track_ids >= 0).all()
        assert len(set(inst.track_ids.tolist())) == len(inst)  # one detection per identity
    # the evaluation at the end of training went through VISEvaluator
    with open(os.path.join(cfg.OUTPUT_DIR, "inference", SEQS, "vis_metrics.json")) as f:
        metrics = json.load(f)["metrics"]
    assert set(metrics) >= {"AP", "AP50", "frame_AP", "id_switches"}
    with open(os.path.join(cfg.OUTPUT_DIR, "split_manifest.json")) as f:  # frames listed
        manifest = json.load(f)
    frames = {os.path.normpath(n) for r in DatasetCatalog.get(SEQS) for n in r["file_names"]}
    assert set(manifest[SEQS]) == frames


@pytest.mark.parametrize("postprocess,paste", [("official", "official"), ("detectron2", "box")])
def test_track_sequence_carries_identities(tmp_path, sequences, postprocess, paste):
    """Fixed detections and tracking vectors per frame: the identities follow the vectors
    through a reordering, a duplicate loses its identity and is dropped, a new one opens."""
    cfg = _cfg(
        tmp_path, "MODEL.SIPMASK.POSTPROCESS", postprocess, "MODEL.SIPMASK.MASK_PASTE", paste
    )
    model = build_model(cfg).eval()
    a, b, c = [10.0, 10, 30, 30], [90.0, 90, 110, 110], [90.0, 10, 110, 30]  # cells (2,2) (12,12)
    frames = [  # (boxes, scores), all class 0
        ([a, b], [0.9, 0.8]),
        ([b, a, [11.0, 11, 31, 31]], [0.9, 0.8, 0.7]),  # b, a, a duplicate of a
        ([c, a], [0.9, 0.8]),  # c: a new object at cell (12, 2)
    ]
    track_map = torch.zeros(1, 32, 16, 16)
    track_map[0, 0, 2, 2] = track_map[0, 1, 12, 12] = 5.0  # a's and b's vectors
    track_map[0, :2, 2, 12] = -1.0  # c's: dissimilar to both (-5 < 0 of "new")
    calls = iter(frames)

    def fake_inference(images, features, predictions):
        boxes, scores = next(calls)
        n = len(boxes)
        model._basis_stride = 2
        r = Instances(images.image_sizes[0], pred_boxes=Boxes(torch.tensor(boxes)),
                      scores=torch.tensor(scores), pred_classes=torch.zeros(n, dtype=torch.long),
                      mask_probs=torch.ones(n, 64, 64), keep_index=torch.arange(n))  # fmt: skip
        return [r]

    model.forward_inference = fake_inference
    model.track_map = lambda features: track_map
    batch = [VISSequenceMapper(cfg)(sequences[0])]
    out = model(batch)[0]["frames"]
    assert [f["instances"].track_ids.tolist() for f in out] == [[0, 1], [1, 0], [2, 0]]
    kept = out[1]["instances"].pred_boxes.tensor.tolist()
    assert kept == [b, a]  # the duplicate (lower comprehensive score) was dropped
    assert all(f["instances"].pred_masks.shape[1:] == (128, 128) for f in out)
