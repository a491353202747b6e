"""
AdelaiDet SOLOv2 parity (`../shared/parity/adelaidet_solov2/`, its README): AdelaiDet's seeded
R-18 checkpoint, converted and loaded strictly into the SOLOv2 built from AdelaiDet's own
config dump, gives AdelaiDet's features, raw head outputs, detections and masks.
"""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from cxr_d2.config import add_cxr_config
from cxr_d2.data.dicom import read_image
from cxr_d2.errors import ConfigError
from cxr_d2.modeling.solov2 import resample_to_strides

from tests.helpers import REPO_ROOT, SHARED
from tests.parity.common import max_diff, reference_model

FIXTURE = os.path.join(SHARED, "parity", "adelaidet_solov2")
# FEATURES_TOL: the README's reference jitter is 5.3e-5 (1 vs 2 threads, values up to 101);
# across CPUs float32 convolutions round differently: on this project's AMD EPYC the features
# are 2.7e-4 from the reference's (each is within 2.2e-4 of a float64 run of the same
# network), so the end-to-end tolerance is 1e-3 (1e-5 of the values). Fed the reference's
# own features, the heads agree within 1.2e-5 here (README: 1e-5 between thread counts;
# the issue: raw outputs within 1e-4, the tolerance used).
FEATURES_TOL, HEAD_TOL, SCORE_TOL = 1e-3, 1e-4, 1e-4
# Head outputs computed from our own features inherit their rounding (relative 1e-5).
HEAD_FROM_INPUT_TOL = 1e-3
COCO_START = "solov2_R_50_FPN_AdelaiDet_COCO.yaml"


@pytest.fixture(scope="module")
def reference():
    """(model in eval mode, converted weights loaded strictly; the reference's outputs)."""
    with reference_model(FIXTURE, reference_cfg, "adelaidet") as ref:
        assert ref.conversion.dropped == []
        assert len(ref.conversion.mapped) == len(ref.state["model"]) == 168
        yield ref.model, ref.outputs


def reference_cfg(*opts):
    """AdelaiDet's dumped config merged into cxr-d2's, MODEL.WEIGHTS pointed nowhere."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(os.path.join(FIXTURE, "config.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", *opts])
    return cfg


def heads(model, features, padded):
    """(cate_preds, kernel_preds, mask_features) of `features` (dict name -> Tensor)."""
    ins = resample_to_strides(
        [features[f] for f in model.head_in_features], model.instance_strides, padded
    )
    cate, kernel = model.head(ins)
    return cate, kernel, model.mask_branch([features[f] for f in model.mask_in_features])


def test_fixture_config_merges_and_builds(reference):
    model, _ = reference
    cfg = reference_cfg()
    assert cfg.MODEL.SOLOV2.MIN_MASK_AREA == "cells" and cfg.MODEL.SOLOV2.MASK_UPSAMPLE == "probs"
    assert model.head.cate_pred.out_channels == 4 and model.head.kernel_pred.out_channels == 64


@pytest.mark.parametrize(
    "opts, key",
    [
        (["MODEL.BOXINST.ENABLED", "True"], "MODEL.BOXINST.ENABLED"),
        (["MODEL.SOLOV2.NMS_TYPE", "mask"], "MODEL.SOLOV2.NMS_TYPE"),
        (["INPUT.CROP.ENABLED", "True"], "INPUT.CROP.CROP_INSTANCE"),
        (["MODEL.SOLOV2.MIN_MASK_AREA", "boxes"], "MODEL.SOLOV2.MIN_MASK_AREA"),
    ],
)
def test_fixture_config_refuses_what_is_not_implemented(opts, key):
    if not os.path.isfile(os.path.join(FIXTURE, "config.yaml")):
        pytest.skip(f"{FIXTURE} is absent")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model(reference_cfg(*opts, "MODEL.DEVICE", "meta"))


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
        names = list(ref["features"])
        assert max_diff([features[n] for n in names], ref["features"].values()) <= FEATURES_TOL
        # the heads fed the reference's own features: its raw outputs
        cate, kernel, mask = heads(model, ref["features"], (256, 256))
        assert max_diff(cate, ref["head"]["cate_pred"]) <= HEAD_TOL
        assert max_diff(kernel, ref["head"]["kernel_pred"]) <= HEAD_TOL
        assert max_diff([mask], [ref["mask_pred"]]) <= HEAD_TOL
        # and fed ours
        cate, kernel, mask = heads(model, features, (256, 256))
        assert max_diff(cate, ref["head"]["cate_pred"]) <= HEAD_FROM_INPUT_TOL
        assert max_diff(kernel, ref["head"]["kernel_pred"]) <= HEAD_FROM_INPUT_TOL
        assert max_diff([mask], [ref["mask_pred"]]) <= HEAD_FROM_INPUT_TOL


def match(scores, classes, ref):
    """Order-free one-to-one match on class and score (AdelaiDet's boxes are all zero):
    {ref index: our index}, each reference detection taking the closest free score."""
    matched, used = {}, set()
    for j in range(len(ref["scores"])):
        gap = (scores - ref["scores"][j]).abs()
        gap[classes != ref["classes"][j]] = float("inf")
        for i in gap.argsort().tolist():
            if gap[i] > SCORE_TOL:
                break
            if i not in used:
                matched[j] = i
                used.add(i)
                break
    return matched


@pytest.mark.parametrize("which", ["published", "low"])
def test_final_instances_and_masks(reference, which):
    """Detections one to one (class, score within 1e-4); every mask identical to the
    reference's outside `masks_ambiguous` (probability within 1e-3 of MASK_THR)."""
    model, ref = reference
    ref = ref["instances"][which]
    model.inference_params["score_thr"] = ref["score_threshold"]
    image = read_image(os.path.join(FIXTURE, "input.png"), "BGR")
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    with torch.no_grad():
        out = model([{"image": tensor, "height": 256, "width": 256}])[0]["instances"]
    assert len(out) == len(ref["scores"])
    matched = match(out.scores, out.pred_classes, ref)
    assert len(matched) == len(ref["scores"]), f"{len(matched)}/{len(ref['scores'])} matched"
    for j, i in matched.items():  # same scores, so mask j is ours i
        outside = ref["masks_ambiguous"][j] == 0
        differ = (out.pred_masks[i] != ref["masks"][j].bool()) & outside
        assert int(differ.sum()) == 0, f"mask {j}: {int(differ.sum())} pixels differ"


def test_coco_start_config_has_the_published_architecture():
    """configs/Pretrained/solov2_R_50_FPN_AdelaiDet_COCO.yaml builds the model of AdelaiDet's
    published R50_3x (the fixture's config with its README's overrides undone): same state-dict
    keys and shapes, so the converted SOLOv2_R50_3x.pth loads strictly (cate_pred aside, 80
    classes there)."""
    if not os.path.isfile(os.path.join(FIXTURE, "config.yaml")):
        pytest.skip(f"{FIXTURE} is absent")
    published = reference_cfg(
        "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256",
        "MODEL.FPN.OUT_CHANNELS", "256", "MODEL.SOLOV2.INSTANCE_IN_CHANNELS", "256",
        "MODEL.SOLOV2.INSTANCE_CHANNELS", "512", "MODEL.SOLOV2.MASK_IN_CHANNELS", "256",
        "MODEL.SOLOV2.MASK_CHANNELS", "128", "MODEL.SOLOV2.NUM_MASKS", "256",
        "MODEL.SOLOV2.NUM_KERNELS", "256", "MODEL.SOLOV2.NUM_CLASSES", "4", "MODEL.DEVICE", "meta",
    )  # fmt: skip
    ours = get_cfg()
    add_cxr_config(ours)
    ours.merge_from_file(os.path.join(REPO_ROOT, "configs", "Pretrained", COCO_START))
    ours.merge_from_list(["MODEL.SOLOV2.NUM_CLASSES", "4", "MODEL.DEVICE", "meta"])
    with torch.device("meta"):
        shapes = [
            {k: tuple(v.shape) for k, v in build_model(c).state_dict().items()}
            for c in (published, ours)
        ]
    assert shapes[0] == shapes[1]
    assert ours.MODEL.PIXEL_STD == published.MODEL.PIXEL_STD
    assert ours.MODEL.PIXEL_MEAN == published.MODEL.PIXEL_MEAN
