"""A tiny BlendMask overfits two phantom films (mask AP50 >= 80); train_net.py trains, then
--eval-only from its checkpoint reproduces its predictions."""

import copy
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper, build_detection_test_loader
from detectron2.data import transforms as T
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from cxr_d2.config import add_cxr_config
from cxr_d2.data.mapper import CXRDatasetMapper
from cxr_d2.engine import Trainer, check_config

from tests.helpers import TINY
from tests.helpers import TWO_FILMS as TWO

CONFIG = os.path.join("configs", "Phantom", "blendmask_R_18_FPN_cpu.yaml")
# The CPU config made smaller still for 128 px films.
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "128", "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.FCOS.NUM_CLS_CONVS", "1",
    "MODEL.FCOS.NUM_BOX_CONVS", "1", "MODEL.BASIS_MODULE.CONVS_DIM", "32",
    "MODEL.BASIS_MODULE.NUM_CONVS", "1", "DATALOADER.NUM_WORKERS", "0",
    "CXR.EVAL.FROC.ENABLED", "False",
]  # fmt: skip
# AP50 100 after 80 iterations in trials; more for margin.
ITERS = 100


def _cfg(output_dir, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["OUTPUT_DIR", str(output_dir), *opts])
    check_config(cfg)
    return cfg


def _evaluate(cfg, model, dataset, output_dir):
    loader = build_detection_test_loader(cfg, dataset, mapper=CXRDatasetMapper(cfg, is_train=False))
    return inference_on_dataset(model, loader, Trainer.build_evaluator(cfg, dataset, output_dir))


def _overfit(cfg, records):
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = DatasetMapper(cfg, is_train=True, augmentations=[T.ResizeShortestEdge(128, 128)])
    batch = [mapper(copy.deepcopy(r)) for r in records]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    with EventStorage():
        for _ in range(ITERS):
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def test_overfits_two_films(two_films, tiny_phantom, one_thread, tmp_path):
    cfg = _cfg(tmp_path, "DATASETS.TRAIN", f"('{TWO}',)", "DATASETS.TEST", f"('{TWO}',)")
    start = time.perf_counter()
    model = _overfit(cfg, two_films)
    train_s = time.perf_counter() - start
    segm = _evaluate(cfg, model, TWO, str(tmp_path / "two"))["segm"]
    print(f"BlendMask: {ITERS} iterations in {train_s:.1f} s, mask AP50 {segm['AP50']:.1f}")
    assert segm["AP50"] >= 80.0, segm


def _predictions(output_dir):
    """The COCO results a run wrote for the tiny test set, as (image, class, score, box) rows."""
    path = os.path.join(output_dir, "inference", f"{TINY}_test", "coco_instances_results.json")
    with open(path) as f:
        rows = json.load(f)
    return [(r["image_id"], r["category_id"], r["score"], r["bbox"]) for r in rows], rows


def test_train_net_trains_then_eval_only_agrees(tiny_phantom, tmp_path):
    """tools/train_net.py trains BlendMask a few iterations and evaluates; --eval-only on its
    model_final.pth writes the same detections and masks and prints the same COCO tables."""
    tool = [sys.executable, os.path.join("tools", "train_net.py"), "--config-file", CONFIG]
    opts = [*SMALL, "DATASETS.TRAIN", f"('{TINY}_train',)", "DATASETS.TEST",
            f"('{TINY}_test',)", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4",
            "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "1000",
            "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]  # fmt: skip
    env = dict(tiny_phantom, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    runs, metrics = {}, {}
    for name, extra in (("train", []), ("eval", ["--eval-only"])):
        weights = ["MODEL.WEIGHTS", str(tmp_path / "train" / "model_final.pth")] if extra else []
        r = subprocess.run(
            [*tool, *extra, *opts, *weights, "OUTPUT_DIR", str(tmp_path / name)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, (name, r.stderr[-3000:])
        log = r.stdout + r.stderr
        assert "Evaluation results for bbox" in log and "Evaluation results for segm" in log
        tables = [
            line.split("copypaste: ")[1] for line in log.splitlines() if "copypaste: " in line
        ]
        runs[name] = _predictions(str(tmp_path / name))
        metrics[name] = tables[-4:]  # bbox and segm: header and values
    assert len(metrics["train"]) == 4 and metrics["eval"] == metrics["train"]
    (trained, trained_rows), (evaluated, evaluated_rows) = runs["train"], runs["eval"]
    assert len(trained) > 0 and len(evaluated) == len(trained)
    for a, b, ra, rb in zip(trained, evaluated, trained_rows, evaluated_rows):
        assert a[:2] == b[:2] and a[2] == pytest.approx(b[2], abs=1e-5)
        assert a[3] == pytest.approx(b[3], abs=1e-3)
        assert ra["segmentation"]["counts"] == rb["segmentation"]["counts"]
