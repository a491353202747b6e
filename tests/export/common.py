"""
Shared by the export tests (R-CNNs and RetinaNet here, FCOS and SipMask in test_dense_*):
tiny seeded models of the R-18 CPU configs at 128 px, phantom films at sizes other than the
traced sample's, and the check that an exported model's detections equal PyTorch's.
"""
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T

from cxr_d2.data.dicom import read_image
from cxr_d2.engine import Trainer, check_config
from cxr_d2.export import compare_instances
from tests.helpers import TINY, TINY_OPTS, base_config, cpu_config

__all__ = ["tiny_model", "spread_logits", "film_inputs", "sample_input", "assert_matches"]

# Every candidate kept (no score threshold), 20 per image: detections are never empty.
LOW_THRESHOLDS = [
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
    "TEST.DETECTIONS_PER_IMAGE", "20",
]
# The films the exported model is checked on: (crop of the 128 px film, H x W), drawn at twice
# its size as the "original" film, resized by the test mapper's ResizeShortestEdge(128, 128).
CROPS = ((112, 128), (128, 96))


def tiny_model(family, output_dir, opts=(), path=None, seed=0):
    """(cfg, model): `path` or cpu_config(family) with TINY_OPTS and LOW_THRESHOLDS, seeded
    random weights with spread logits, eval mode."""
    cfg = base_config(path or cpu_config(family))
    cfg.merge_from_list(TINY_OPTS + LOW_THRESHOLDS + list(opts) + ["OUTPUT_DIR", str(output_dir)])
    check_config(cfg)
    torch.manual_seed(seed)
    model = Trainer.build_model(cfg)
    spread_logits(model, seed)
    return cfg, model.eval()


def spread_logits(model, seed=0, std=0.1, names=("cls_score", "predictor", "cls_logits")):
    """
    Redraw the weights of the last classification and mask layers (modules whose name ends with
    one of `names`) from N(0, std). A fresh model initialises them to ~0 so every score and mask
    probability sits at its prior: ties and pixels on the 0.5 mask threshold, where a 1e-7
    difference between two runtimes flips the order or the pixel. Spread, they are not ties.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.split(".")[-1] in names and getattr(module, "weight", None) is not None:
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * std)


def sample_input(cfg):
    """The traced sample: the first film of the tiny test set, 128 x 128, as the test loader
    gives it."""
    return next(iter(Trainer.build_test_loader(cfg, f"{TINY}_test")))


def film_inputs(cfg, first=1):
    """Dataset dicts ("image", "height", "width") of tiny test films `first`, `first + 1`, ...,
    cropped to CROPS, enlarged 2x as the original film and resized as the test mapper does."""
    records = DatasetCatalog.get(f"{TINY}_test")[first : first + len(CROPS)]
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    inputs = []
    for record, (h, w) in zip(records, CROPS):
        crop = read_image(record["file_name"], cfg.INPUT.FORMAT)[:h, :w]
        film = T.ResizeTransform(h, w, 2 * h, 2 * w).apply_image(crop)
        image = resize.get_transform(film).apply_image(film)
        inputs.append({
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "height": 2 * h, "width": 2 * w,
        })
    return inputs


def assert_matches(model, exported, inputs, box_atol=1e-3, score_atol=1e-4, mask_iou=0.99):
    """Each input's exported detections equal PyTorch's (`model([input])`): same count and
    classes, boxes within box_atol px, scores within score_atol, pasted masks IoU >= mask_iou.
    Returns the comparisons."""
    reports = []
    for x in inputs:
        got = exported(x["image"], x["height"], x["width"])
        with torch.no_grad():
            ref = model([x])[0]["instances"]
        report = compare_instances(got, ref, box_atol, score_atol, mask_iou)
        assert len(ref) > 0, "PyTorch detects nothing: the comparison would be empty"
        assert report.ok, f"{tuple(x['image'].shape)}: {report}"
        reports.append(report)
    return reports
