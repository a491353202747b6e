"""A Mask R-CNN built by Detectron2 from its own model-zoo config loads STRICTLY into
configs/Pretrained/mask_rcnn_R_50_FPN_COCO.yaml, straight from the model zoo's .pkl format and
through `convert_weights --from detectron2`, and gives identical detections."""
import pickle

import numpy as np
import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

from cxr_d2.convert.cli import run
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import base_config

COCO = "configs/Pretrained/mask_rcnn_R_50_FPN_COCO.yaml"
ZOO = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
# Test-time settings both sides share: every detection of a random-weight model is kept.
TEST = {
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0, "TEST.DETECTIONS_PER_IMAGE": 20,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 200, "MODEL.RPN.POST_NMS_TOPK_TEST": 100,
}  # fmt: skip


def detectron2_mask_rcnn():
    """Detectron2's own Mask R-CNN R-50 FPN 3x (its package's config), random weights with
    FrozenBN statistics away from identity."""
    try:
        path = model_zoo.get_config_file(ZOO)
    except RuntimeError:
        pytest.skip("detectron2's model-zoo configs are not installed")
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS = "cpu", ""
    cfg.merge_from_list([v for kv in TEST.items() for v in kv])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def save_model_zoo_pkl(model, path):
    """As the model zoo's model_final_*.pkl: {"model": {name: ndarray}, "__author__": ...}."""
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo"}, f)


def load_strictly(model, weights):
    """Load `weights` into `model` as MODEL.WEIGHTS does; nothing missing, unexpected or of
    another shape."""
    checkpointer = AtomicCheckpointer(model)
    checkpoint = checkpointer._load_file(weights)
    incompatible = checkpointer._load_model(checkpoint)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    assert not incompatible.incorrect_shapes


def detections(model, img):
    with torch.no_grad():
        return model([{"image": img, "height": 160, "width": 192}])[0]["instances"]


def test_detectron2_mask_rcnn_loads_strictly_and_detects_the_same(tmp_path):
    ref = detectron2_mask_rcnn()
    pkl = tmp_path / "model_final.pkl"
    save_model_zoo_pkl(ref, pkl)
    converted = tmp_path / "model_final_cxr.pth"
    conversion = run("detectron2", str(pkl), str(converted))
    assert not conversion.unmapped and all(s == d for s, d in conversion.mapped)
    img = torch.rand(3, 160, 192, generator=torch.Generator().manual_seed(3)) * 255
    theirs = detections(ref, img)
    assert len(theirs) == 20
    cfg = base_config(COCO, **{"MODEL.ROI_HEADS.NUM_CLASSES": 80}, **TEST)
    model = build_model(cfg).eval()
    for weights in (pkl, converted):
        load_strictly(model, str(weights))
        ours = detections(model, img)
        assert torch.equal(ours.pred_classes, theirs.pred_classes)
        assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
        assert torch.equal(ours.scores, theirs.scores)
        assert torch.equal(ours.pred_masks, theirs.pred_masks)


def test_caffe2_imagenet_backbone_is_renamed():
    from cxr_d2.convert import convert_checkpoint

    blobs = {"conv1_w": np.zeros((64, 3, 7, 7), np.float32), "res_conv1_bn_s": np.ones(64, np.float32),
             "res2_0_branch2a_w": np.zeros((64, 64, 1, 1), np.float32),
             "fc1000_w": np.zeros((1000, 2048), np.float32)}  # fmt: skip
    conv = convert_checkpoint("detectron2", {"model": blobs, "__author__": "Caffe2"})
    assert sorted(conv.model) == [
        "backbone.bottom_up.res2.0.conv1.weight", "backbone.bottom_up.stem.conv1.norm.weight",
        "backbone.bottom_up.stem.conv1.weight",
    ]  # fmt: skip
    assert [k for k, _ in conv.dropped] == ["fc1000_w"]
