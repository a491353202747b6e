import argparse
import os

import pytest
from detectron2.config import get_cfg

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import check_config, setup_cfg
from cxr_d2.errors import ConfigError


def _cfg(tmp_path, *opts):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(os.path.join("configs", "Phantom", "faster_rcnn_R_18_FPN_cpu.yaml"))
    cfg.merge_from_list(["OUTPUT_DIR", str(tmp_path / "out"), *opts])
    return cfg


def test_add_cxr_config_leaves_global_defaults():
    assert get_cfg().MODEL.ROI_HEADS.NUM_CLASSES == 80
    cfg = get_cfg()
    add_cxr_config(cfg)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 0 and cfg.MODEL.RETINANET.NUM_CLASSES == 0
    assert get_cfg().MODEL.ROI_HEADS.NUM_CLASSES == 80


def test_num_classes_from_dataset(tmp_path):
    cfg = _cfg(tmp_path)
    check_config(cfg)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 4
    assert cfg.MODEL.RETINANET.NUM_CLASSES == 4
    cfg = _cfg(
        tmp_path,
        "DATASETS.TRAIN", "('cxr_phantom_agnostic_train',)",
        "DATASETS.TEST", "('cxr_phantom_agnostic_test',)",
    )
    check_config(cfg)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1


def test_num_classes_disagreeing_is_an_error_naming_both(tmp_path):
    cfg = _cfg(tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", 80)
    with pytest.raises(ConfigError, match=r"MODEL.ROI_HEADS.NUM_CLASSES is 80 .*'cxr_phantom_train' has 4"):
        check_config(cfg)
    cfg = _cfg(tmp_path, "MODEL.ROI_HEADS.NUM_CLASSES", 4)
    check_config(cfg)  # agreeing explicit value is fine
    cfg = _cfg(tmp_path, "DATASETS.TEST", "('cxr_phantom_agnostic_test',)")
    with pytest.raises(ConfigError, match="disagree on the number of classes"):
        check_config(cfg)


def test_unknown_dataset(tmp_path):
    cfg = _cfg(tmp_path, "DATASETS.TRAIN", "('cxr_phantom_trian',)")
    with pytest.raises(ConfigError, match=r"DATASETS.TRAIN names 'cxr_phantom_trian'.*cxr_phantom_train"):
        check_config(cfg)


def test_missing_weights(tmp_path):
    cfg = _cfg(tmp_path, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match=r"MODEL.WEIGHTS .*nope.pth does not exist"):
        check_config(cfg)


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = _cfg(tmp_path)
    cfg.OUTPUT_DIR = str(blocker / "out")
    with pytest.raises(ConfigError, match=r"OUTPUT_DIR .*a_file/out is not writable"):
        check_config(cfg)


def test_setup_cfg_missing_config_file(tmp_path):
    args = argparse.Namespace(config_file=str(tmp_path / "x.yaml"), opts=[], resume=False)
    with pytest.raises(ConfigError, match="x.yaml does not exist"):
        setup_cfg(args)
