"""Loading a checkpoint checks that it fits the config: a norm of another type or a shape that
differs is an error naming the keys; a class-count head of another size is re-initialised and
listed in the log."""
import logging
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from cxr_d2 import CXRError
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import base_config, cpu_config

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
