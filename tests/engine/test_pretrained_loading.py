"""Loading a checkpoint checks that it fits the config: a norm of another type or a shape that
differs is an error naming the keys; a class-count head of another size is re-initialised and
listed in the log."""
import json
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from cxr_d2 import CXRError
from cxr_d2.convert.cli import run
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import TINY, TINY_OPTS, base_config, cpu_config, train

R18 = cpu_config("faster_rcnn")


def _model(**over):
    cfg = base_config(R18, **{"MODEL.ROI_HEADS.NUM_CLASSES": 4, **over})
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _saved(model, path):
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _load(model, path):
    checkpointer = AtomicCheckpointer(model)
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    level = checkpointer.logger.level
    checkpointer.logger.addHandler(handler)
    checkpointer.logger.setLevel(logging.INFO)
    try:
        checkpointer.load(path)
    finally:
        checkpointer.logger.removeHandler(handler)
        checkpointer.logger.setLevel(level)
    return messages


def test_batchnorm_checkpoint_into_groupnorm_config(tmp_path):
    path = _saved(_model(**{"MODEL.RESNETS.NORM": "FrozenBN"}), tmp_path / "bn.pth")
    with pytest.raises(CXRError, match=r"backbone.bottom_up.res2.0.conv1.norm.running_(mean|var): "
                       r"BatchNorm statistics, but .* is a GroupNorm"):  # fmt: skip
        _load(_model(), path)


def test_groupnorm_checkpoint_into_batchnorm_config(tmp_path):
    path = _saved(_model(), tmp_path / "gn.pth")
    for norm in ("FrozenBN", "BN"):
        with pytest.raises(CXRError, match=r"is a (FrozenBatchNorm2d|BatchNorm2d) here but has no "
                           "statistics in the checkpoint"):  # fmt: skip
            _load(_model(**{"MODEL.RESNETS.NORM": norm}), path)


def test_norm_in_checkpoint_but_none_in_config(tmp_path):
    path = _saved(_model(**{"MODEL.FPN.NORM": "GN"}), tmp_path / "gn.pth")
    with pytest.raises(CXRError, match=r"fpn_lateral\d.norm.weight: a norm in the checkpoint, none"):
        _load(_model(**{"MODEL.FPN.NORM": ""}), path)


def test_shape_outside_a_class_head_is_an_error(tmp_path):
    path = _saved(_model(), tmp_path / "fpn128.pth")
    with pytest.raises(CXRError, match=r"backbone.fpn_\w+.weight is \(128, .*\) in the checkpoint, "
                       r"\(64, .*\) here"):  # fmt: skip
        _load(_model(**{"MODEL.FPN.OUT_CHANNELS": 64}), path)


def test_class_count_heads_are_reinitialised_and_listed(tmp_path):
    source = _model()
    path = _saved(source, tmp_path / "four.pth")
    target = _model(**{"MODEL.ROI_HEADS.NUM_CLASSES": 1})
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    messages = _load(target, path)
    reinit = [m for m in messages if m.startswith("Re-initialised")]
    assert len(reinit) == 1
    for key, rows in [("cls_score.weight", "5 -> 2"), ("bbox_pred.weight", "16 -> 4")]:
        assert f"roi_heads.box_predictor.{key} ({rows} rows)" in reinit[0]
    loaded, theirs = target.state_dict(), source.state_dict()
    for key, value in loaded.items():
        if "box_predictor" in key:
            assert torch.equal(value, fresh[key]), key  # kept its initialisation
        else:
            assert torch.equal(value, theirs[key]), key
    assert not any("incompatible shapes" in m for m in messages)


def _caffe2_stem(path):
    """A Caffe2 ImageNet .pkl of the stem only (BN folded into scale and bias)."""
    blobs = {"conv1_w": np.random.rand(64, 3, 7, 7).astype(np.float32),
             "res_conv1_bn_s": np.ones(64, np.float32), "res_conv1_bn_b": np.zeros(64, np.float32)}
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    return str(path)


def test_caffe2_batchnorm_into_groupnorm_is_an_error_into_frozen_bn_loads(tmp_path):
    path = _caffe2_stem(tmp_path / "R-18-stem.pkl")
    with pytest.raises(CXRError, match=r"stem.conv1.norm.(weight|bias): a BatchNorm's in the checkpoint, "
                       r"but .* is a GroupNorm"):  # fmt: skip
        _load(_model(), path)
    model = _model(**{"MODEL.RESNETS.NORM": "FrozenBN"})
    _load(model, path)
    assert torch.equal(model.backbone.bottom_up.stem.conv1.norm.weight, torch.ones(64))


def test_a_checkpoint_of_another_model_is_an_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"model": {"darknet.weight": torch.zeros(3)}}, path)
    with pytest.raises(CXRError, match="none of its 1 keys is one of this model's"):
        _load(_model(), str(path))


def _train_net(*args, env):
    cmd = [sys.executable, os.path.join("tools", "train_net.py"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout + r.stderr


@pytest.mark.slow  # a minute on 2 cores: a training, a fine-tuning and an evaluation
def test_fine_tune_on_another_class_list(tiny_phantom, tmp_path):
    """Train Mask R-CNN on the 4-class phantom, convert its checkpoint, fine-tune it on the
    one-class (agnostic) phantom: the log lists the re-initialised heads and --eval-only of the
    fine-tuned model reproduces the AP of the run's final evaluation."""
    config = cpu_config("mask_rcnn")
    cfg = base_config(config)
    cfg.merge_from_list(TINY_OPTS + ["OUTPUT_DIR", str(tmp_path / "four")])
    train(cfg)
    converted = tmp_path / "four_classes.pth"
    conversion = run("detectron2", str(tmp_path / "four" / "model_final.pth"), str(converted))
    assert {k for k, _ in conversion.dropped} >= {"trainer", "iteration"}  # solver state

    agnostic = [
        *TINY_OPTS, "DATASETS.TRAIN", f"('{TINY}_agnostic_train',)",
        "DATASETS.TEST", f"('{TINY}_agnostic_test',)", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    ]  # fmt: skip
    log = _train_net("--config-file", config, *agnostic, "TEST.EVAL_PERIOD", "12", "SOLVER.MAX_ITER", "12",
                     "MODEL.WEIGHTS", str(converted), "OUTPUT_DIR", str(tmp_path / "one"), env=tiny_phantom)  # fmt: skip
    reinit = next(line for line in log.splitlines() if "Re-initialised" in line)
    for head in ("box_predictor.cls_score.weight (5 -> 2 rows)", "box_predictor.bbox_pred.weight "
                 "(16 -> 4 rows)", "mask_head.predictor.weight (4 -> 1 rows)"):  # fmt: skip
        assert head in reinit
    evaluation = tmp_path / "one" / "inference" / f"{TINY}_agnostic_test" / "evaluation.json"
    trained = json.loads(evaluation.read_text())
    _train_net("--config-file", config, "--eval-only", *agnostic,
               "MODEL.WEIGHTS", str(tmp_path / "one" / "model_final.pth"),
               "OUTPUT_DIR", str(tmp_path / "eval"), env=tiny_phantom)  # fmt: skip
    evaluated = json.loads(
        (tmp_path / "eval" / "inference" / f"{TINY}_agnostic_test" / "evaluation.json").read_text()
    )
    for task in ("bbox", "segm"):
        print(task, "AP after fine-tuning", trained["tasks"][task]["AP"], "--eval-only",
              evaluated["tasks"][task]["AP"])
        assert evaluated["tasks"][task]["AP"] == trained["tasks"][task]["AP"]
    assert evaluated["tasks"] == trained["tasks"]
    predictions = [
        json.loads((tmp_path / run / "inference" / f"{TINY}_agnostic_test" /
                    "coco_instances_results.json").read_text())
        for run in ("one", "eval")
    ]  # fmt: skip
    assert predictions[0] and predictions[0] == predictions[1]
