"""
Official SipMask parity (`../shared/parity/sipmask_official/`, its README): the official
(mmdetection 1.x) seeded R-18 checkpoint, converted and loaded strictly into the SipMask built
from `projects/SipMask/configs/official/sipmask_R_50_caffe_FPN_GN_1x.yaml` with only the
issue's overrides, gives the official features, raw head outputs, detections and masks.
"""
import os
import sys

import pytest
import torch
from detectron2.config import get_cfg

from cxr_d2.config import add_cxr_config
from cxr_d2.data.dicom import read_image

from tests.helpers import REPO_ROOT, SHARED
from tests.parity.common import max_diff, reference_model

sys.path.insert(0, os.path.join(REPO_ROOT, "projects", "SipMask"))
from sipmask import add_sipmask_config  # noqa: E402

FIXTURE = os.path.join(SHARED, "parity", "sipmask_official")
CONFIG = os.path.join(REPO_ROOT, "projects", "SipMask", "configs", "official",
                      "sipmask_R_50_caffe_FPN_GN_1x.yaml")  # fmt: skip
# The overrides, and nothing else.
OVERRIDES = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLASSES", "4",
    "INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "256",
]
# FEATURES_TOL: the README's reference jitter is 8e-5 (1 vs 2 threads, values up to 148);
# across CPUs float32 convolutions round differently: on this project's AMD EPYC the features
# are 2.7e-4 from the reference's (a float64 run of the same network is 1.1e-4 from them), so
# the end-to-end tolerance is 1e-3 (7e-6 of the values). Fed the reference's own features the
# head agrees within HEAD_TOL (the issue: raw outputs within 1e-4); bbox_preds are pixels up
# to ~500 (the stride times the raw output; README jitter 2.1e-4 px), compared in strides.
FEATURES_TOL, HEAD_TOL, HEAD_FROM_INPUT_TOL = 1e-3, 1e-4, 1e-3
BOX_TOL, SCORE_TOL = 1e-3, 1e-4
STRIDES = [8, 16, 32, 64, 128]


def reference_cfg(*opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    add_sipmask_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([*OVERRIDES, *opts])
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="module")
def reference():
    """(model in eval mode, converted weights loaded strictly; the reference's outputs)."""
    with reference_model(FIXTURE, reference_cfg, "sipmask") as ref:
        state, conversion = ref.state["state_dict"], ref.conversion
        floats = [k for k in state if not k.endswith("num_batches_tracked")]
        assert len(conversion.mapped) == len(floats) == 158
        assert len(conversion.dropped) == len(state) - 158  # BN step counters
        yield ref.model, ref.outputs


def head_outputs(model, features):
    """The official names of the head's outputs for `features` (list P3-P7)."""
    aligned = []
    hook = model.head.feature_align.register_forward_hook(lambda m, i, o: aligned.append(o))
    try:
        logits, reg, ctr, coefficients, basis = model.head(features)
    finally:
        hook.remove()
    return {
        "cls_scores": logits, "bbox_preds": reg, "centernesses": ctr,
        "cof_preds": coefficients, "feat_align": aligned, "feat_masks": [basis],
    }


def compare_head(ours, ref, tol):
    """Max abs difference of each raw output (bbox_preds in strides) within `tol`."""
    theirs = dict(ref["head"], feat_masks=[ref["feat_masks"]])
    theirs["bbox_preds"] = [x / s for x, s in zip(theirs["bbox_preds"], STRIDES)]
    diffs = {k: max_diff(ours[k], theirs[k]) for k in theirs}
    assert all(d <= tol for d in diffs.values()), diffs


def test_preprocessing_features_and_raw_outputs(reference):
    model, ref = reference
    image = read_image(os.path.join(FIXTURE, "input.png"), "BGR")
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    x = torch.load(os.path.join(FIXTURE, "input.pt"), weights_only=True)
    with torch.no_grad():
        images = model.preprocess_image([{"image": tensor}])
        assert images.tensor.shape[-2:] == (256, 256)
        assert (images.tensor[0] - x).abs().max().item() == 0
        features = model.backbone(x[None])
        names = [f"p{i}" for i in range(3, 8)]
        assert max_diff([features[n] for n in names], [ref["features"][n] for n in names]) \
            <= FEATURES_TOL
        compare_head(head_outputs(model, [ref["features"][n] for n in names]), ref, HEAD_TOL)
        compare_head(head_outputs(model, [features[n] for n in names]), ref,
                     HEAD_FROM_INPUT_TOL)  # fmt: skip


def match(out, ref):
    """Order-free one-to-one match: same class, box within BOX_TOL px, score within
    SCORE_TOL. {ref index: our index}."""
    matched, used = {}, set()
    boxes = out.pred_boxes.tensor
    for j in range(len(ref["scores"])):
        ok = ((boxes - ref["boxes"][j]).abs().max(dim=1).values <= BOX_TOL) \
            & ((out.scores - ref["scores"][j]).abs() <= SCORE_TOL) \
            & (out.pred_classes == ref["classes"][j])
        free = [i for i in torch.nonzero(ok).squeeze(1).tolist() if i not in used]
        if free:
            matched[j] = free[0]
            used.add(free[0])
    return matched


@pytest.mark.parametrize("which", ["published", "low"])
def test_final_instances_and_masks(reference, which):
    """Detections one to one; every mask identical to the reference's outside
    `masks_ambiguous` (probability within 1e-3 of 0.4; the fixture has 111 such pixels)."""
    model, ref = reference
    ref = ref["instances"][which]
    assert model.test_score_thresh == ref["score_threshold"]  # 0.05 in both entries
    image = read_image(os.path.join(FIXTURE, "input.png"), "BGR")
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    with torch.no_grad():
        out = model([{"image": tensor, "height": 256, "width": 256}])[0]["instances"]
    assert len(out) == len(ref["scores"]) == 84
    matched = match(out, ref)
    assert len(matched) == len(ref["scores"]), f"{len(matched)}/{len(ref['scores'])} matched"
    for j, i in matched.items():
        outside = ref["masks_ambiguous"][j] == 0
        differ = (out.pred_masks[i] != ref["masks"][j].bool()) & outside
        assert int(differ.sum()) == 0, f"mask {j}: {int(differ.sum())} pixels differ"


@pytest.mark.slow
def test_previous_behaviour_switches_lose_parity(reference):
    """Each pre-issue-18 switch value is a real difference: with it, the fixture's detections
    no longer all match (so the official defaults above are what gives parity)."""
    model, ref = reference
    ref = ref["instances"]["published"]
    image = read_image(os.path.join(FIXTURE, "input.png"), "BGR")
    inputs = [{"image": torch.as_tensor(image.transpose(2, 0, 1).copy()), "height": 256,
               "width": 256}]  # fmt: skip
    for attr, value in (("postprocess", "detectron2"), ("mask_paste", "box")):
        old = getattr(model, attr)
        setattr(model, attr, value)
        try:
            with torch.no_grad():
                out = model(inputs)[0]["instances"]
        finally:
            setattr(model, attr, old)
        if attr == "postprocess":
            assert len(match(out, ref)) < len(ref["scores"])
        else:  # same detections, other masks
            matched = match(out, ref)
            assert len(matched) == len(ref["scores"])
            differ = sum(int(((out.pred_masks[i] != ref["masks"][j].bool())
                              & (ref["masks_ambiguous"][j] == 0)).sum())
                         for j, i in matched.items())  # fmt: skip
            assert differ > 0
