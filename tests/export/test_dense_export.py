"""
FCOS and SipMask exported (TorchScript in torch, ONNX in onnxruntime) give PyTorch's detections
and masks on phantom films of sizes other than the traced sample's: same count and classes,
boxes within 1e-3 px, scores within 1e-4, pasted masks IoU >= 0.99 and at most 1e-4 of their
pixels differing.
"""
import json

import pytest
import torch
from detectron2.config import get_cfg

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import Trainer, check_config
from cxr_d2.export import UnsupportedExport, export_model, load_exported
from tests.export.common import (
    assert_matches, film_inputs, sample_input, spread_logits, tiny_model,
)
from tests.helpers import REPO_ROOT, TINY_OPTS, cpu_config

sipmask = pytest.importorskip("sipmask")

SIPMASK_CPU = f"{REPO_ROOT}/projects/SipMask/configs/sipmask_R_18_FPN_cpu.yaml"
# A low threshold: a fresh model's scores sit near the prior (0.01). FCOS keeps 20 per image so
# that the limit (with its ties rule) is in the graph; SipMask its default 100.
FCOS_OPTS = ["MODEL.FCOS.INFERENCE_TH_TEST", "0.005", "MODEL.FCOS.POST_NMS_TOPK_TEST", "20"]
SIPMASK_OPTS = ["MODEL.FCOS.INFERENCE_TH_TEST", "0.005"]
# Mask pixels differing between an exported model and PyTorch, at most (fraction of the pasted
# masks' pixels): float rounding may flip a pixel whose probability is within ~1e-6 of the
# threshold.
MASK_PIXEL_FRACTION = 1e-4


def dense_model(family, output_dir, opts=(), seed=0):
    """(cfg, model): the R-18 CPU config of `family` ("fcos" or "sipmask") on the tiny phantom
    set at 128 px, seeded random weights with spread class logits and mask coefficients, and
    (SipMask++) a mask-IoU head predicting at least 0.5."""
    cfg = get_cfg()
    add_cxr_config(cfg)
    if family == "sipmask":
        sipmask.add_sipmask_config(cfg)
    cfg.merge_from_file(SIPMASK_CPU if family == "sipmask" else cpu_config(family))
    base = SIPMASK_OPTS if family == "sipmask" else FCOS_OPTS
    cfg.merge_from_list(TINY_OPTS + base + list(opts) + ["OUTPUT_DIR", str(output_dir)])
    check_config(cfg)
    torch.manual_seed(seed)
    model = Trainer.build_model(cfg)
    spread_logits(model, seed, names=("cls_logits", "coefficients"))
    if getattr(model, "mask_iou_head", None) is not None:
        with torch.no_grad():  # fresh, it predicts IoU 0 (a ReLU of ~0): every score would be 0
            model.mask_iou_head.predictor.bias.fill_(0.5)
    return cfg, model.eval()


def export_and_compare(family, fmt, tmp_path, opts=(), opset=None):
    cfg, model = dense_model(family, tmp_path, opts)
    kwargs = {} if opset is None else {"opset": opset}
    path = export_model(cfg, model, sample_input(cfg), fmt, str(tmp_path / "export"), **kwargs)
    meta = json.loads((tmp_path / "export" / "model.json").read_text())
    assert meta["dynamic_size"] and meta["sample_size"] == [128, 128]
    exported = load_exported(path)
    inputs = film_inputs(cfg)
    reports = assert_matches(model, exported, inputs)
    print(family, fmt, *reports, sep="\n  ")  # the agreement, for docs/export.md (pytest -rP)
    return exported, meta, inputs, reports


CASES = [
    ("fcos", "torchscript", None),
    ("sipmask", "onnx", 19),
    pytest.param("fcos", "onnx", None, marks=pytest.mark.slow),
    pytest.param("sipmask", "torchscript", None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("family,fmt,opset", CASES)
def test_exported_detections_and_masks_equal_pytorch(tiny_phantom, one_thread, tmp_path, family,
                                                     fmt, opset):
    exported, meta, inputs, reports = export_and_compare(family, fmt, tmp_path, opset=opset)
    # the per-image limit acted inside the graph (more candidates than it passed the threshold)
    limit = 20 if family == "fcos" else 100
    assert [len(exported.raw(x["image"])) for x in inputs] == [limit, limit]
    if family == "fcos":
        assert meta["postprocess"] == "detectron2.modeling.postprocessing.detector_postprocess"
        return
    assert meta["postprocess"] == "sipmask.export.sipmask_postprocess"
    for x, r in zip(inputs, reports):
        pixels = r.count_a * x["height"] * x["width"]
        assert r.min_mask_iou >= 0.99
        assert r.mask_pixels_differ <= MASK_PIXEL_FRACTION * pixels, r


@pytest.mark.slow
@pytest.mark.parametrize("fmt,opset", [("onnx", 17), ("torchscript", None)])
def test_sipmask_without_deformable_alignment_exports_at_any_opset(tiny_phantom, one_thread,
                                                                    tmp_path, fmt, opset):
    """FEATURE_ALIGN False (a plain conv in FA's place): no DeformConv, so opset 17 does."""
    export_and_compare("sipmask", fmt, tmp_path, ["MODEL.SIPMASK.FEATURE_ALIGN", "False"], opset)


@pytest.mark.slow
def test_sipmask_plus_plus_mask_scoring_exports(tiny_phantom, one_thread, tmp_path):
    """SipMask++'s mask-IoU head (scores times the predicted mask IoU) inside the graph; padded
    convs, as the official unpadded ones need 254 px inputs."""
    opts = ["MODEL.SIPMASK.MASK_SCORING.ENABLED", "True", "MODEL.SIPMASK.MASK_SCORING.PADDING", "1"]
    exported, _, inputs, _ = export_and_compare("sipmask", "onnx", tmp_path, opts, opset=19)
    assert exported.raw(inputs[0]["image"]).scores.min() > 0  # the scores carry the IoU factor


@pytest.mark.parametrize("opts,message", [
    (["MODEL.SIPMASK.MASK_PASTE", "box"], "MODEL.SIPMASK.MASK_PASTE 'box' cannot be exported"),
    (["MODEL.SIPMASK.POSTPROCESS", "detectron2"],
     "MODEL.SIPMASK.POSTPROCESS 'detectron2' cannot be exported"),
])
def test_untraceable_sipmask_switches_are_one_clear_error(tiny_phantom, tmp_path, opts, message):
    cfg, model = dense_model("sipmask", tmp_path, opts)
    with pytest.raises(UnsupportedExport, match=message):
        export_model(cfg, model, sample_input(cfg), "torchscript", str(tmp_path / "export"))


def test_a_model_built_on_fcos_is_not_exported_as_fcos(tiny_phantom, tmp_path):
    """BlendMask subclasses FCOS: FCOS's export would silently drop its masks."""
    cfg, model = tiny_model("blendmask", tmp_path)
    with pytest.raises(UnsupportedExport, match="exporting BlendMask is not supported"):
        export_model(cfg, model, sample_input(cfg), "onnx", str(tmp_path / "export"))
