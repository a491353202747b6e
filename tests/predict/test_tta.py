"""Test-time augmentation of dense detectors, against the plain model and hand-flipped images."""
import numpy as np
import pytest
import torch
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import build_model
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA, GeneralizedRCNNWithTTA
from torchvision.ops import batched_nms

from cxr_d2.modeling.tta import DenseDetectorWithTTA, build_tta_model, model_nms_thresh

from tests.helpers import tiny_config

# The film is 128 px at the test size; the "file" it came from is twice that, so every
# prediction also goes through the test resize back (XYXY_ABS in the 256 x 256 original).
ORIG = 256

pytestmark = pytest.mark.usefixtures("one_thread")  # a shared 2-core machine


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def _input(image):
    return {"image": image, "height": ORIG, "width": ORIG}


@pytest.fixture(scope="module")
def retinanet():
    # random weights score ~0.01 everywhere: keep every candidate so there is much to merge
    cfg = tiny_config("retinanet", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
                  "MODEL.RETINANET.TOPK_CANDIDATES_TEST", "200")
    return cfg, _model(cfg)


@pytest.fixture(scope="module")
def film():
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0, 255, 128).repeat(128, 1)  # a left-right ramp: flipping matters
    noise = torch.randint(0, 60, (128, 128), generator=g).float()
    return ((base + noise).clamp(0, 255).to(torch.uint8))[None].repeat(3, 1, 1)


def _sorted(instances):
    order = torch.argsort(instances.scores, descending=True, stable=True)
    return (instances.pred_boxes.tensor[order], instances.scores[order],
            instances.pred_classes[order])


def test_identity_augmentation_equals_the_plain_model(retinanet, film):
    cfg, model = retinanet
    identity = DatasetMapperTTA(min_sizes=[128], max_size=128, flip=False)
    tta = DenseDetectorWithTTA(cfg, model, tta_mapper=identity)
    with torch.no_grad():
        plain = model([_input(film)])[0]["instances"]
        merged = tta([_input(film)])[0]["instances"]
    assert len(plain) == 100  # TEST.DETECTIONS_PER_IMAGE: the merge has as much to keep
    assert merged.image_size == (ORIG, ORIG)
    for a, b in zip(_sorted(merged), _sorted(plain)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_flip_boxes_map_back_as_a_hand_flipped_film(retinanet, film):
    """Flip TTA = the film's and the hand-flipped film's predictions, the latter's boxes
    flipped back by hand (x -> W - x), merged by class-wise NMS at the model's own IoU."""
    cfg, model = retinanet
    tta = DenseDetectorWithTTA(cfg, model, tta_mapper=DatasetMapperTTA(
        min_sizes=[128], max_size=128, flip=True))
    assert tta.nms_thresh == cfg.MODEL.RETINANET.NMS_THRESH_TEST
    with torch.no_grad():
        merged = tta([_input(film)])[0]["instances"]
        straight = model([_input(film)])[0]["instances"]
        flipped = model([_input(film.flip(-1))])[0]["instances"]
    back = flipped.pred_boxes.tensor.clone()
    xyxy = flipped.pred_boxes.tensor
    back[:, 0], back[:, 2] = ORIG - xyxy[:, 2], ORIG - xyxy[:, 0]
    boxes = torch.cat([straight.pred_boxes.tensor, back])
    scores = torch.cat([straight.scores, flipped.scores])
    classes = torch.cat([straight.pred_classes, flipped.pred_classes])
    keep = batched_nms(boxes, scores, classes, cfg.MODEL.RETINANET.NMS_THRESH_TEST)[:100]
    got = _sorted(merged)
    torch.testing.assert_close(got[0], boxes[keep], rtol=0, atol=1e-4)
    torch.testing.assert_close(got[1], scores[keep], rtol=0, atol=0)
    torch.testing.assert_close(got[2], classes[keep], rtol=0, atol=0)
    # both halves contribute: the flip is not a no-op on this film
    assert (keep >= len(straight)).any() and (keep < len(straight)).any()


def test_masks_of_kept_detections_map_back(film):
    """A dense mask model (BlendMask): each kept detection keeps its own mask, the flipped
    film's masks flipped back by hand."""
    cfg = tiny_config("blendmask", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
                  "MODEL.FCOS.PRE_NMS_TOPK_TEST", "50", "MODEL.FCOS.POST_NMS_TOPK_TEST", "10")
    model = _model(cfg)
    tta = DenseDetectorWithTTA(cfg, model, tta_mapper=DatasetMapperTTA(
        min_sizes=[128], max_size=128, flip=True))
    with torch.no_grad():
        merged = tta([_input(film)])[0]["instances"]
        straight = model([_input(film)])[0]["instances"]
        flipped = model([_input(film.flip(-1))])[0]["instances"]
    assert merged.pred_masks.shape == (len(merged), ORIG, ORIG) and len(merged) > 0
    candidates = torch.cat([straight.pred_masks, flipped.pred_masks.flip(-1)])
    scores = torch.cat([straight.scores, flipped.scores])
    for mask, score in zip(merged.pred_masks, merged.scores):
        # the candidate of this score (scores are distinct floats of a random model)
        (i,) = torch.nonzero(scores == score)[:, 0].tolist()
        assert torch.equal(mask, candidates[i])
    from_flip = [float(s) in set(flipped.scores.tolist()) for s in merged.scores]
    assert any(from_flip) and not all(from_flip)


def test_build_tta_model_chooses_by_architecture(retinanet):
    cfg, model = retinanet
    assert isinstance(build_tta_model(cfg, model), DenseDetectorWithTTA)
    rcnn_cfg = tiny_config("faster_rcnn")
    assert isinstance(build_tta_model(rcnn_cfg, _model(rcnn_cfg)), GeneralizedRCNNWithTTA)


def test_merge_iou_from_the_config_or_the_model(retinanet):
    cfg, model = retinanet
    assert model_nms_thresh(model) == cfg.MODEL.RETINANET.NMS_THRESH_TEST
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.AUG.NMS_THRESH = 0.3
    assert DenseDetectorWithTTA(cfg, model).nms_thresh == 0.3


def test_default_mapper_flips_and_resizes(retinanet, film):
    """TEST.AUG.MIN_SIZES x FLIP: one model input per pair, each at its own size."""
    cfg, model = retinanet
    cfg = cfg.clone()
    cfg.defrost()
    cfg.TEST.AUG.MIN_SIZES = (96, 160)
    cfg.TEST.AUG.MAX_SIZE = 400
    tta = DenseDetectorWithTTA(cfg, model)
    augmented = tta.tta_mapper(_input(film))
    sizes = [tuple(a["image"].shape[1:]) for a in augmented]
    assert sizes == [(96, 96), (96, 96), (160, 160), (160, 160)]
    flips = [any(isinstance(t, HFlipTransform) for t in a["transforms"].transforms)
             for a in augmented]
    assert flips == [False, True, False, True]
    with torch.no_grad():
        out = tta([_input(film)])[0]["instances"]
    assert out.image_size == (ORIG, ORIG) and len(out) > 0
    assert np.isfinite(out.pred_boxes.tensor.numpy()).all()
    assert float(out.pred_boxes.tensor.min()) >= 0 and float(out.pred_boxes.tensor.max()) <= ORIG
