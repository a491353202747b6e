"""Bad config files, overrides and values end in one ConfigError line naming the file (and
line) or key and what to do; --num-gpus without GPUs too, also through tools/train_net.py."""
import argparse
import math
import os
import subprocess
import sys

import pytest
import torch
from detectron2.config import get_cfg

from cxr_d2.config import add_cxr_config
from cxr_d2.engine import check_config, setup_cfg
from cxr_d2.engine.launch import check_launch
from cxr_d2.errors import ConfigError

from tests.helpers import REPO_ROOT, cpu_config

BASE = os.path.join(REPO_ROOT, cpu_config("retinanet"))

# name -> (files {name: text or bytes}, fragment of the message; {d} is the folder). The
# config given is "bad.yaml".
FILE_CASES = {
    "yaml_syntax": ({"bad.yaml": "SOLVER:\n  BASE_LR: [0.1\nMODEL: {}\n"}, "{d}/bad.yaml line 3: not valid YAML"),
    "yaml_indent": ({"bad.yaml": "SOLVER:\n  BASE_LR: 0.1\n MAX_ITER: 3\n"}, "{d}/bad.yaml line 3: not valid YAML"),
    "unknown_key": ({"bad.yaml": "SOLVER:\n  BASE_RL: 0.1\n"}, "{d}/bad.yaml: unknown config key SOLVER.BASE_RL (did you mean SOLVER.BASE_LR?)"),
    "unknown_top": ({"bad.yaml": "SOLVR:\n  BASE_LR: 0.1\n"}, "{d}/bad.yaml: unknown config key SOLVR"),
    "unknown_key_in_base": (
        {"base.yaml": "INPUT:\n  MIN_SIZE_TRAINN: (64,)\n", "bad.yaml": "_BASE_: base.yaml\n"},
        "{d}/base.yaml: unknown config key INPUT.MIN_SIZE_TRAINN (did you mean INPUT.MIN_SIZE_TRAIN",
    ),
    "missing_base": ({"bad.yaml": "_BASE_: ../Base-Nope.yaml\n"}, "{d}/bad.yaml: _BASE_ ../Base-Nope.yaml does not exist"),
    "base_not_a_path": ({"bad.yaml": "_BASE_: 3\n"}, "{d}/bad.yaml: _BASE_ is 3; give the path"),
    "base_cycle": ({"bad.yaml": "_BASE_: bad.yaml\n"}, "{d}/bad.yaml: _BASE_ includes itself"),
    "wrong_type": ({"bad.yaml": "SOLVER:\n  MAX_ITER: many\n"}, "{d}/bad.yaml: Type mismatch"),
    "wrong_type_in_base": (
        {"base.yaml": "SOLVER:\n  IMS_PER_BATCH: [2]\n", "bad.yaml": "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.1\n"},
        "{d}/base.yaml: Type mismatch",
    ),
    "empty": ({"bad.yaml": ""}, "{d}/bad.yaml holds nothing, not a mapping"),
    "a_list": ({"bad.yaml": "- SOLVER\n- MODEL\n"}, "{d}/bad.yaml holds a list, not a mapping"),
    "binary": ({"bad.yaml": b"\x89PNG\r\n\x1a\n\xff\xfe\x00"}, "{d}/bad.yaml is not a text file"),
    "a_folder": ({"bad.yaml/x": ""}, "--config-file {d}/bad.yaml does not exist"),
    "unhashable_key": ({"bad.yaml": "? [1, 2]\n: 3\n"}, "{d}/bad.yaml line 1: not valid YAML (found unhashable key)"),
}


def _write(folder, files):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _args(config_file, *opts, **kw):
    return argparse.Namespace(config_file=config_file, opts=list(opts), resume=False, **kw)


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_config_file(case, tmp_path):
    files, fragment = FILE_CASES[case]
    _write(tmp_path, files)
    with pytest.raises(ConfigError) as e:
        setup_cfg(_args(str(tmp_path / "bad.yaml")))
    message = str(e.value)
    assert fragment.format(d=tmp_path) in message and "\n" not in message


@pytest.mark.parametrize("where", ["bad.yaml", "base.yaml"])
def test_python_tag_in_a_config_runs_nothing(where, tmp_path):
    marker = tmp_path / "ran"
    evil = f"SOLVER:\n  BASE_LR: !!python/object/apply:os.system ['touch {marker}']\n"
    files = {"base.yaml": evil, "bad.yaml": "_BASE_: base.yaml\n"} if where == "base.yaml" else {"bad.yaml": evil}
    _write(tmp_path, files)
    with pytest.raises(ConfigError) as e:
        setup_cfg(_args(str(tmp_path / "bad.yaml")))
    assert f"{tmp_path / where} line 2: a YAML tag that builds a Python object" in str(e.value)
    assert not marker.exists()


OVERRIDE_CASES = {
    "unknown": (["SOLVER.BASE_RL", "0.1"], "Non-existent key: SOLVER.BASE_RL (did you mean SOLVER.BASE_LR?)"),
    "type": (["SOLVER.MAX_ITER", "abc"], "Type mismatch"),
    "odd": (["SOLVER.MAX_ITER"], "Override list has odd length"),
}


@pytest.mark.parametrize("case", list(OVERRIDE_CASES))
def test_bad_override(case, tmp_path):
    opts, fragment = OVERRIDE_CASES[case]
    with pytest.raises(ConfigError, match="command-line override") as e:
        setup_cfg(_args(BASE, "OUTPUT_DIR", str(tmp_path), *opts))
    assert fragment in str(e.value)


def _cfg(tmp_path, **values):
    cfg = get_cfg()
    add_cxr_config(cfg)
    cfg.merge_from_file(BASE)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    for key, value in values.items():
        node = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


# (dotted key with __, value) -> fragment of the message
VALUE_CASES = [
    ("SOLVER__IMS_PER_BATCH", 0, "SOLVER.IMS_PER_BATCH is 0: give the images per batch, at least 1"),
    ("SOLVER__CHECKPOINT_PERIOD", 0, "SOLVER.CHECKPOINT_PERIOD is 0: give the iterations between"),
    ("SOLVER__MAX_ITER", -5, "SOLVER.MAX_ITER is -5: give the number of iterations"),
    ("SOLVER__MAX_ITER", 0, "SOLVER.MAX_ITER is 0"),
    ("SOLVER__STEPS", (50, 20), "SOLVER.STEPS is (50, 20): give strictly increasing"),
    ("SOLVER__STEPS", (20, 20), "SOLVER.STEPS is (20, 20)"),
    ("SOLVER__STEPS", (0,), "SOLVER.STEPS is (0,)"),
    ("SOLVER__BASE_LR", 0.0, "SOLVER.BASE_LR is 0.0: give a learning rate > 0"),
    ("SOLVER__BASE_LR", -0.1, "SOLVER.BASE_LR is -0.1"),
    ("SOLVER__BASE_LR", math.nan, "SOLVER.BASE_LR is nan"),
    ("SOLVER__BASE_LR", math.inf, "SOLVER.BASE_LR is inf"),
    ("SOLVER__GAMMA", 0.0, "SOLVER.GAMMA is 0.0"),
    ("SOLVER__MOMENTUM", 1.5, "SOLVER.MOMENTUM is 1.5: give a momentum in [0, 1)"),
    ("SOLVER__WEIGHT_DECAY", -1e-4, "SOLVER.WEIGHT_DECAY is -0.0001"),
    ("SOLVER__WARMUP_ITERS", -1, "SOLVER.WARMUP_ITERS is -1"),
    ("SOLVER__WARMUP_FACTOR", 2.0, "SOLVER.WARMUP_FACTOR is 2.0"),
    ("SOLVER__WARMUP_METHOD", "cosine", "SOLVER.WARMUP_METHOD is 'cosine': use 'linear' or 'constant'"),
    ("SOLVER__LR_SCHEDULER_NAME", "StepLR", "SOLVER.LR_SCHEDULER_NAME is 'StepLR'"),
    ("SOLVER__CLIP_GRADIENTS__CLIP_VALUE", 0.0, "SOLVER.CLIP_GRADIENTS.CLIP_VALUE is 0.0"),
    ("INPUT__MIN_SIZE_TRAIN", (-1,), "INPUT.MIN_SIZE_TRAIN is (-1,)"),
    ("INPUT__MIN_SIZE_TRAIN", (), "INPUT.MIN_SIZE_TRAIN is ()"),
    ("INPUT__MAX_SIZE_TRAIN", 0, "INPUT.MAX_SIZE_TRAIN is 0: give the longest side"),
    ("INPUT__MIN_SIZE_TEST", -1, "INPUT.MIN_SIZE_TEST is -1"),
    ("INPUT__MAX_SIZE_TEST", -3, "INPUT.MAX_SIZE_TEST is -3"),
    ("INPUT__MIN_SIZE_TRAIN_SAMPLING", "uniform", "INPUT.MIN_SIZE_TRAIN_SAMPLING is 'uniform'"),
    ("TEST__EVAL_PERIOD", -1, "TEST.EVAL_PERIOD is -1"),
    ("TEST__DETECTIONS_PER_IMAGE", 0, "TEST.DETECTIONS_PER_IMAGE is 0"),
    ("DATALOADER__NUM_WORKERS", -2, "DATALOADER.NUM_WORKERS is -2"),
    ("DATALOADER__SAMPLER_TRAIN", "Random", "DATALOADER.SAMPLER_TRAIN is 'Random'"),
    ("CXR__DATA__MAX_IMAGE_PIXELS", 0, "CXR.DATA.MAX_IMAGE_PIXELS is 0"),
    ("CXR__EVAL__FROC__IOU_THRESH", 1.5, "CXR.EVAL.FROC.IOU_THRESH is 1.5"),
    ("CXR__DIVERGENCE__ACTION", "explode", "CXR.DIVERGENCE.ACTION is 'explode': use 'stop' or 'warn'"),
    ("CXR__DIVERGENCE__FACTOR", 1.0, "CXR.DIVERGENCE.FACTOR is 1.0"),
    ("CXR__DIVERGENCE__WINDOW", 0, "CXR.DIVERGENCE.WINDOW is 0"),
    ("MODEL__DEVICE", "gpu", "MODEL.DEVICE is 'gpu': use 'cpu', 'cuda' or 'cuda:N'"),
    ("MODEL__DEVICE", "tpu:0", "MODEL.DEVICE is 'tpu:0'"),
]


@pytest.mark.parametrize("key, value, fragment", VALUE_CASES, ids=[f"{k}={v}" for k, v, _ in VALUE_CASES])
def test_bad_value(key, value, fragment, tmp_path):
    cfg = _cfg(tmp_path, **{key: value, "SOLVER__CLIP_GRADIENTS__ENABLED": True})
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert fragment in str(e.value)


def test_range_sampling_needs_two_sizes(tmp_path):
    cfg = _cfg(tmp_path, INPUT__MIN_SIZE_TRAIN_SAMPLING="range", INPUT__MIN_SIZE_TRAIN=(64,))
    with pytest.raises(ConfigError, match=r"sampling 'range' needs two sizes"):
        check_config(cfg)


def test_batch_not_divisible_by_processes(tmp_path):
    cfg = _cfg(tmp_path, SOLVER__IMS_PER_BATCH=3)
    with pytest.raises(ConfigError, match="SOLVER.IMS_PER_BATCH 3 is not divisible by the 2 processes"):
        check_config(cfg, world_size=2)


def test_good_values_pass(tmp_path):
    cfg = _cfg(tmp_path, INPUT__MIN_SIZE_TEST=0, TEST__EVAL_PERIOD=0, DATALOADER__NUM_WORKERS=0)
    check_config(cfg)  # 0 = no test resize, evaluation at the end only, loading in-process


@pytest.mark.parametrize("steps, kept", [((3, 6), (3,)), ((6,), ()), ((3, 5), (3, 5)), ((7, 9), ())])
def test_steps_at_or_after_max_iter_never_fire_and_are_dropped(steps, kept, tmp_path):
    """A milestone == MAX_ITER was fvcore's assertion; beyond it Detectron2 drops it. Both warn."""
    cfg = _cfg(tmp_path, SOLVER__MAX_ITER=6, SOLVER__STEPS=steps)
    check_config(cfg)
    assert tuple(cfg.SOLVER.STEPS) == kept


def test_cuda_device_without_cuda_falls_back_to_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _cfg(tmp_path, MODEL__DEVICE="cuda")
    check_config(cfg)
    assert cfg.MODEL.DEVICE == "cpu"


def test_full_disk_is_refused_before_the_run(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=5 * 2**20))
    cfg = _cfg(tmp_path)
    with pytest.raises(ConfigError, match=r"OUTPUT_DIR .*/out has 5 MB free, less than CXR.MIN_FREE_DISK_MB 100"):
        check_config(cfg)
    cfg.CXR.MIN_FREE_DISK_MB = 0  # the check is off
    check_config(cfg)


# (--num-gpus, --num-machines, GPUs torch sees) -> fragment. Without a GPU, --num-gpus N runs N
# CPU processes (tests/engine/test_cpu_launch.py).
LAUNCH_CASES = [
    (2, 1, 1, "--num-gpus 2 needs 2 CUDA GPUs but torch sees 1 on this machine; give --num-gpus 1"),
    (4, 1, 2, "--num-gpus 4 needs 4 CUDA GPUs but torch sees 2"),
    (3, 2, 2, "--num-gpus 3 needs 3 CUDA GPUs but torch sees 2"),
    (0, 1, 0, "--num-gpus 0 --num-machines 1: give at least 1"),
]


@pytest.mark.parametrize("gpus, machines, seen, fragment", LAUNCH_CASES)
def test_launch_beyond_the_gpus(gpus, machines, seen, fragment, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: seen > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: seen)
    with pytest.raises(ConfigError, match="") as e:
        check_launch(argparse.Namespace(num_gpus=gpus, num_machines=machines))
    assert fragment in str(e.value)


def _tool(*args):
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "train_net.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


@pytest.mark.slow
def test_tool_prints_one_line_for_a_bad_yaml(tmp_path):
    _write(tmp_path, {"bad.yaml": f"_BASE_: {BASE}\nSOLVER:\n  BASE_RL: 0.1\n"})
    r = _tool("--config-file", str(tmp_path / "bad.yaml"), "OUTPUT_DIR", str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/bad.yaml: unknown config key SOLVER.BASE_RL (did you mean "
        "SOLVER.BASE_LR?); fix its name or remove it"
    ), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
