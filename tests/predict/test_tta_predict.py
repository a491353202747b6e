"""tools/predict.py --tta and --ensemble: an identity augmentation and an ensemble of a model
with itself give the plain predictions."""
import json
import os

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from PIL import Image

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import check_config
from cxr_d2.predict.cli import main as predict_main

from tests.helpers import TINY, cpu_config

pytestmark = pytest.mark.usefixtures("one_thread")  # a shared 2-core machine


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A config keeping every RetinaNet candidate (random weights score ~0.01) at 128 px, its
    random-init checkpoint, and a 160 x 192 film."""
    folder = tmp_path_factory.mktemp("tta_predict")
    config = folder / "retina.yaml"
    config.write_text(
        f'_BASE_: "{os.path.abspath(cpu_config("retinanet"))}"\n'
        "MODEL:\n  RETINANET:\n    SCORE_THRESH_TEST: 0.0\n    TOPK_CANDIDATES_TEST: 200\n"
        "INPUT:\n  MIN_SIZE_TEST: 128\n  MAX_SIZE_TEST: 160\n"
        f"DATASETS:\n  TRAIN: ('{TINY}_train',)\n  TEST: ('{TINY}_test',)\n"
    )
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(str(config))
    check_config(cfg)
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(folder)).save("random")
    ramp = np.linspace(0, 255, 192)[None].repeat(160, 0)
    noise = np.random.default_rng(0).integers(0, 60, (160, 192))
    Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8)).save(folder / "film.png")
    return str(config), str(folder / "random.pth"), str(folder / "film.png")


def _predict(model_files, out, *flags, opts=()):
    config, checkpoint, film = model_files
    code = predict_main([
        "--config-file", config, "--input", film, "--output", str(out), "--score-thresh", "0",
        "--num-workers", "0", "--no-overlays", "--no-progress", *flags,
        "--opts", "MODEL.WEIGHTS", checkpoint, *opts,
    ])
    assert code == 0
    with open(out / "predictions.json") as f:
        dets = sorted(json.load(f), key=lambda d: -d["score"])
    assert len(dets) > 50
    return (np.array([d["bbox"] for d in dets]), np.array([d["score"] for d in dets]),
            [d["category_id"] for d in dets])


def test_identity_tta_and_self_ensemble_equal_plain_predict(model_files, tmp_path):
    boxes, scores, classes = _predict(model_files, tmp_path / "plain")
    config, checkpoint, _ = model_files
    identity = _predict(model_files, tmp_path / "tta", "--tta",
                        opts=("TEST.AUG.MIN_SIZES", "(128,)", "TEST.AUG.MAX_SIZE", "160",
                              "TEST.AUG.FLIP", "False"))
    # WBF of two identical sets: every box clusters with its twin only (the model's NMS left
    # same-class boxes at IoU <= 0.5 < 0.55), the weighted mean is the box itself
    itself = _predict(model_files, tmp_path / "ensemble", "--ensemble",
                      f"{config}@{checkpoint}:2", f"{config}@{checkpoint}:1")
    for got in (identity, itself):
        np.testing.assert_allclose(got[0], boxes, atol=1e-3)
        np.testing.assert_allclose(got[1], scores, atol=1e-5)
        assert got[2] == classes
