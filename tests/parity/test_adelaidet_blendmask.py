"""
AdelaiDet BlendMask parity (`../shared/parity/adelaidet_blendmask/`, its README): AdelaiDet's
seeded R-18 checkpoint, converted and loaded strictly into the model built from AdelaiDet's
own config dump, gives its features, head outputs, attentions, bases, detections and masks.
"""
import os

import pytest
import torch
from detectron2.modeling import build_model

from cxr_d2.errors import ConfigError
from cxr_d2.modeling import BlendMask

from tests.helpers import SHARED
from tests.parity.common import max_diff
from tests.parity.test_adelaidet_fcos import (
    HEAD_E2E_TOL,
    HEAD_TOL,
    check_features,
    check_head,
    fixture_dir,
    load_reference,
    match_detections,
    read_input,
    reference_cfg,
    run_image,
)

FIXTURE = os.path.join(SHARED, "parity", "adelaidet_blendmask")
# The reference's own 1- vs 2-thread spread of the blender's probabilities is 5.2e-6; measured
# here (cross-machine float32 noise upstream) 2e-5.
MASK_PROBS_TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    yield from load_reference(FIXTURE)


def test_config_dump_merges_builds_and_refuses_what_is_not_implemented():
    path = fixture_dir(FIXTURE)
    model = build_model(reference_cfg(path))
    assert isinstance(model, BlendMask) and model.thresh_with_ctr and not model.clip_before_nms
    assert isinstance(model.basis_module.seg_head[0].norm, torch.nn.BatchNorm2d)  # AdelaiDet's
    with pytest.raises(ConfigError, match=r"^MODEL\.FCOS\.LOSS_NORMALIZER_CLS is 'all'"):
        build_model(reference_cfg(path, "MODEL.FCOS.LOSS_NORMALIZER_CLS", "all"))
    with pytest.raises(ConfigError, match=r"^MODEL\.MOBILENET is True"):
        build_model(reference_cfg(path, "MODEL.MOBILENET", "True"))


def test_raw_outputs(reference):
    model, ref, _ = reference
    features = check_features(model, ref, FIXTURE)
    for feats, tol in [(ref["features"], HEAD_TOL), (features, HEAD_E2E_TOL)]:
        box_feats = check_head(model, ref, feats, tol)
        with torch.no_grad():
            assert max_diff(model.top_layer(box_feats), ref["head"]["top_feats"]) <= tol
            bases, _ = model.basis_module(feats)
        assert max_diff([bases], [ref["bases"]]) <= tol


def _blended(model, fmt):
    """Detections with unclipped boxes and R x R mask probabilities, before pasting."""
    with torch.no_grad():
        images = model.preprocess_image([read_input(FIXTURE, fmt)])
        all_features = model.backbone(images.tensor)
        features = [all_features[f] for f in model.head_in_features]
        cls_feats, box_feats = model.head.towers(features)
        logits, bbox_reg, ctrness = model.head.predict(cls_feats, box_feats)
        bases, _ = model.basis_module(all_features)
        predictions = (logits, bbox_reg, ctrness, model.top_layer(box_feats), bases, None)
        return model.forward_inference(images, features, predictions)[0]


# The fixture's two entries share their tensors (the published threshold is the low one).
@pytest.mark.parametrize("entry", ["published", pytest.param("low", marks=pytest.mark.slow)])
def test_detections_and_masks_match(reference, entry):
    model, ref, fmt = reference
    expected = ref["instances"][entry]
    model.test_score_thresh = expected["score_threshold"]
    n = len(expected["scores"])

    # Before pasting: NMS and the blender see the unclipped boxes, as AdelaiDet.
    raw = _blended(model, fmt)
    unclipped = dict(expected, boxes=expected["boxes_unclipped"])
    matched = match_detections(raw.pred_boxes.tensor, raw.scores, raw.pred_classes, unclipped)
    assert len(raw) == n and len(matched) == n
    ref_idx, our_idx = list(matched), list(matched.values())
    probs = raw.pred_masks[our_idx]
    assert (probs - expected["mask_probs"][ref_idx]).abs().max().item() <= MASK_PROBS_TOL

    # Final instances: boxes clipped, masks pasted; identical outside the ambiguous pixels.
    found = run_image(model, FIXTURE, fmt)
    matched = match_detections(found.pred_boxes.tensor, found.scores, found.pred_classes, expected)
    assert len(found) == n and len(matched) == n
    ref_idx, our_idx = list(matched), list(matched.values())
    differ = found.pred_masks[our_idx].to(torch.uint8) != expected["masks"][ref_idx]
    ambiguous = expected["masks_ambiguous"][ref_idx].bool()
    assert not (differ & ~ambiguous).any()
    # Counted, not asserted (the reference flips 1 390 of them between 1 and 2 threads).
    print(f"{entry}: {int((differ & ambiguous).sum())} ambiguous pixels differ")
