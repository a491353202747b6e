"""Ensembles by weighted boxes fusion: a hand-worked fusion, ensemble_boxes called directly,
members' one-line errors."""
import os
import re

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from ensemble_boxes import weighted_boxes_fusion

from cxr_d2.errors import ConfigError
from cxr_d2.modeling.ensemble import ModelEnsemble, fuse_boxes
from cxr_d2.predict.ensemble import build_ensemble, parse_member

from tests.helpers import cpu_config, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # a shared 2-core machine


def _instances(size, boxes, scores, classes):
    r = Instances(size)
    r.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    r.scores = torch.tensor(scores)
    r.pred_classes = torch.tensor(classes)
    return r


def test_two_boxes_fused_by_hand():
    """A 100 x 200 (h x w) image. A: [20, 10, 60, 50] 0.9 weight 2; B: [24, 10, 64, 50] 0.6
    weight 1 (IoU 36*40 / (2*1600 - 1440) = 0.82 > 0.55: one cluster) and, of class 1,
    [100, 60, 140, 90] 0.5 alone. WBF in x/200, y/100: a fused box is the mean of its boxes
    weighted by score x weight (1.8 and 0.6), x1 = (1.8*20 + 0.6*24) / 2.4 = 21, x2 = 61;
    its score ("avg") the mean score x weight, times min(models, boxes) / sum of weights:
    (1.8 + 0.6) / 2 * 2 / 3 = 0.8; the lone box 0.5 * 1 / 3."""
    a = _instances((100, 200), [[20, 10, 60, 50]], [0.9], [0])
    b = _instances((100, 200), [[24, 10, 64, 50], [100, 60, 140, 90]], [0.6, 0.5], [0, 1])
    fused = fuse_boxes([a, b], [2, 1], (100, 200))
    assert fused.image_size == (100, 200)
    torch.testing.assert_close(
        fused.pred_boxes.tensor, torch.tensor([[21.0, 10, 61, 50], [100, 60, 140, 90]]),
        rtol=0, atol=1e-4,
    )
    torch.testing.assert_close(fused.scores, torch.tensor([0.8, 0.5 / 3]), rtol=0, atol=1e-6)
    assert fused.pred_classes.tolist() == [0, 1]


def _film():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 255, (3, 128, 128), generator=g, dtype=torch.uint8)


def test_model_ensemble_equals_ensemble_boxes_called_directly():
    """Two random-init models (RetinaNet, Faster R-CNN) on a 128 px film from a 160 x 192
    (h x w) file: the ensemble's output is weighted_boxes_fusion of their outputs, normalised
    and scaled back here by hand."""
    cfgs = [tiny_config("retinanet", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
                    "MODEL.RETINANET.TOPK_CANDIDATES_TEST", "100"),
            tiny_config("faster_rcnn", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")]
    torch.manual_seed(0)
    models = [build_model(c).eval() for c in cfgs]
    cfg = cfgs[0].clone()
    cfg.defrost()
    cfg.TEST.ENSEMBLE.IOU_THRESH = 0.5
    cfg.TEST.ENSEMBLE.SKIP_BOX_THRESH = 0.01
    ensemble = ModelEnsemble(cfg, models, [3.0, 1.0])
    x = {"image": _film(), "height": 160, "width": 192}
    with torch.no_grad():
        fused = ensemble([x])[0]["instances"]
        outs = [m([dict(x)])[0]["instances"] for m in models]
    assert all(len(o) > 0 for o in outs)
    scale = torch.tensor([192, 160, 192, 160], dtype=torch.float64)
    boxes, scores, labels = weighted_boxes_fusion(
        [(o.pred_boxes.tensor.double() / scale).clamp(0, 1).numpy() for o in outs],
        [o.scores.double().numpy() for o in outs],
        [o.pred_classes.numpy() for o in outs],
        weights=[3.0, 1.0], iou_thr=0.5, skip_box_thr=0.01,
    )
    boxes, scores, labels = boxes[:100], scores[:100], labels[:100]
    assert 0 < len(fused) == len(scores) and len(fused) < sum(len(o) for o in outs)
    torch.testing.assert_close(
        fused.pred_boxes.tensor.double(), torch.from_numpy(boxes) * scale, rtol=0, atol=1e-3
    )
    torch.testing.assert_close(fused.scores.double(), torch.from_numpy(scores), rtol=0, atol=1e-6)
    assert fused.pred_classes.tolist() == labels.astype(int).tolist()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("A:x", "the weight after ':' ('x') is not a number"),
        ("A:-1", "weight -1 must be a positive number"),
        ("A@", "is malformed"),
        ("@ckpt.pth", "is malformed"),
        ("nonexistent.yaml", "config file nonexistent.yaml does not exist"),
        ("A@/nonexistent/model.pth", "checkpoint /nonexistent/model.pth does not exist"),
    ],
)
def test_malformed_members_are_one_line(spec, message):
    spec = spec.replace("A", cpu_config("retinanet"))
    with pytest.raises(ConfigError, match=f"^--ensemble member {re.escape(repr(spec))}") as e:
        parse_member(spec)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_member_syntax():
    m = parse_member(cpu_config("retinanet") + ":2.5")
    assert (m.config_file, m.checkpoint, m.weight) == (cpu_config("retinanet"), "", 2.5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = tiny_config("retinanet")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ensemble")
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("random")
    return str(folder / "random.pth")


def test_member_errors_name_the_member(checkpoint, tmp_path):
    base = tiny_config("retinanet")
    retina = cpu_config("retinanet")
    with pytest.raises(ConfigError, match="give at least two members"):
        build_ensemble(base, [f"{retina}@{checkpoint}"])
    # no @CKPT and MODEL.WEIGHTS empty in the config
    with pytest.raises(ConfigError, match=rf"^--ensemble member '{retina}': its MODEL.WEIGHTS"):
        build_ensemble(base, [f"{retina}@{checkpoint}", retina])
    # a member trained on other classes (one merged "lesion" class)
    agnostic = tmp_path / "agnostic.yaml"
    agnostic.write_text(
        f'_BASE_: "{os.path.abspath(retina)}"\n'
        'DATASETS:\n  TRAIN: ("cxr_phantom_tiny_agnostic_train",)\n'
        '  TEST: ("cxr_phantom_tiny_agnostic_test",)\n'
    )
    with pytest.raises(ConfigError, match="predicts the classes of cxr_phantom_tiny_agnostic_train"
                       r" \(lesion\), not those of the run's data") as e:
        build_ensemble(base, [f"{retina}@{checkpoint}", f"{agnostic}@{checkpoint}"])
    assert "\n" not in str(e.value)
