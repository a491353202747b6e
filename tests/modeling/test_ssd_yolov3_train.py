"""SSD and YOLOv3 end to end: overfitting two phantom films, and train_net.py --eval-only."""

import os
import subprocess
import sys
import time

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import Trainer, check_config

from tests.helpers import TINY, TINY_OPTS, train
from tests.helpers import TWO_FILMS as OVERFIT
from tests.modeling.tiny_dense import CONFIGS, TINY_MODEL

# Both reach AP50 100 after 50 iterations; twice that for margin. One thread: on a shared
# 2-core machine two threads fight other processes and run 10-20x slower.
OVERFIT_ITERS = {"ssd": 100, "yolov3": 100}


def _cfg(family, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(CONFIGS[family])
    cfg.merge_from_list(list(TINY_OPTS) + TINY_MODEL[family] + list(opts))
    return cfg


@pytest.mark.parametrize("family", ["ssd", "yolov3"])
def test_tiny_model_overfits_two_films(family, two_films, one_thread, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(
        family,
        "DATASETS.TRAIN",
        f"('{OVERFIT}',)",
        "DATASETS.TEST",
        f"('{OVERFIT}',)",
        "OUTPUT_DIR",
        str(tmp_path),
    )
    check_config(cfg)
    model = build_model(cfg)
    mapper = DatasetMapper(cfg, is_train=True, augmentations=[T.ResizeShortestEdge(128, 128)])
    batch = [mapper(r) for r in two_films]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    model.train()
    from detectron2.utils.events import EventStorage

    with EventStorage():
        for _ in range(OVERFIT_ITERS[family]):
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    train_s = time.perf_counter() - start
    model.eval()
    evaluator = Trainer.build_evaluator(cfg, OVERFIT, str(tmp_path))
    evaluator.reset()
    test_mapper = DatasetMapper(cfg, is_train=False)
    with torch.no_grad():
        for r in two_films:
            evaluator.process([r], model([test_mapper(r)]))
    ap50 = evaluator.evaluate()["bbox"]["AP50"]
    print(f"{family}: {OVERFIT_ITERS[family]} iterations in {train_s:.1f} s, AP50 {ap50:.1f}")
    assert ap50 >= 80.0, f"{family} reached AP50 {ap50:.1f} on the two films it trained on"


def _run_tool(*args, env=None):
    cmd = [sys.executable, os.path.join("tools", "train_net.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("family", ["ssd", "yolov3"])
def test_train_then_eval_only_from_checkpoint(family, tiny_phantom, one_thread, tmp_path):
    """A few iterations through the Trainer, then train_net.py --eval-only on the checkpoint."""
    cfg = _cfg(family, "OUTPUT_DIR", str(tmp_path))
    trainer, losses = train(cfg)
    assert losses and all(v == v and abs(v) < 1e4 for v in losses.values()), losses
    r = _run_tool(
        "--config-file",
        CONFIGS[family],
        "--eval-only",
        *TINY_OPTS,
        *TINY_MODEL[family],
        "MODEL.WEIGHTS",
        str(tmp_path / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
        env=tiny_phantom,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Evaluation results for bbox" in r.stdout + r.stderr
    assert os.path.isfile(
        tmp_path / "eval" / "inference" / f"{TINY}_test" / "coco_instances_results.json"
    )
