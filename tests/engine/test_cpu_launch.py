"""
Two CPU processes joined by gloo (cxr_d2.engine.cpu_launch): the test set is sharded by
Detectron2's InferenceSampler and gathered by the evaluator, every image exactly once, and the
metrics equal those of one process on the same checkpoint; `--num-gpus 2` trains with DDP.
"""

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog

from cxr_d2.engine import Trainer, check_config
from cxr_d2.engine.cpu_launch import cpu_ddp, launch_cpu, run_device, uses_cpu
from cxr_d2.engine.launch import check_launch

from tests.helpers import REPO_ROOT, TINY, TINY_OPTS, base_config, cpu_config

TEST_SET = f"{TINY}_test"
# The evaluator's files that must not depend on the number of processes.
_EVAL_OPTS = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "CXR.EVAL.FROC.ENABLED", "False"]


def _cfg(weights, output_dir):
    cfg = base_config(cpu_config("faster_rcnn"))
    cfg.merge_from_list(
        TINY_OPTS + _EVAL_OPTS + ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", output_dir]
    )
    check_config(cfg)
    cfg.freeze()
    return cfg


def _evaluate(weights, output_dir):
    """Trainer.test of the checkpoint, in this process or in each worker of a group."""
    cfg = _cfg(weights, output_dir)
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(weights)
    Trainer.test(cfg, model)


def _files(output_dir):
    folder = os.path.join(output_dir, "inference", TEST_SET)
    with open(os.path.join(folder, "evaluation.json")) as f:
        metrics = json.load(f)["tasks"]
    with open(os.path.join(folder, "coco_instances_results.json")) as f:
        results = json.load(f)
    gathered = torch.load(os.path.join(folder, "instances_predictions.pth"), weights_only=False)
    return metrics, results, [p["image_id"] for p in gathered]


def _canonical(results):
    return sorted(json.dumps(r, sort_keys=True) for r in results)


def test_two_processes_gather_every_image_once(tiny_phantom, tmp_path, monkeypatch):
    """A random-init Faster R-CNN R-18 (scores >= 0 kept): 2 gloo workers vs this process."""
    monkeypatch.setenv("CXR_DATASETS", tiny_phantom["CXR_DATASETS"])  # the workers' datasets
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per worker, as here below
    image_ids = [r["image_id"] for r in DatasetCatalog.get(TEST_SET)]
    torch.manual_seed(0)
    cfg = _cfg("", str(tmp_path / "init"))
    weights = str(tmp_path / "init.pth")
    torch.save({"model": Trainer.build_model(cfg).state_dict()}, weights)

    launch_cpu(_evaluate, 2, args=(weights, str(tmp_path / "two")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _evaluate(weights, str(tmp_path / "one"))
    finally:
        torch.set_num_threads(threads)

    metrics2, results2, gathered2 = _files(str(tmp_path / "two"))
    metrics1, results1, gathered1 = _files(str(tmp_path / "one"))
    assert len(image_ids) >= 4 and len(set(image_ids)) == len(image_ids)
    assert sorted(gathered2) == sorted(image_ids) == sorted(gathered1)  # each exactly once
    assert len(results2) > len(image_ids)
    assert _canonical(results2) == _canonical(results1)
    assert metrics2 == metrics1  # exactly, every task and metric
    assert metrics1["bbox"]["AR"] > 0


def _fail_in_rank_1(where):
    from detectron2.utils import comm

    from cxr_d2.errors import ConfigError

    if comm.get_rank() == 1:
        raise ConfigError(f"rank 1 of {comm.get_world_size()} refuses {where}")
    comm.synchronize()  # rank 0 waits here until the spawner ends it


@pytest.mark.slow  # two interpreters importing cxr_d2: ~20 s of CPU
def test_worker_error_is_one_line(capfd):
    from cxr_d2.engine.cpu_launch import WorkerFailed

    with pytest.raises(WorkerFailed, match=r"worker 1 of 2 \(CPU, gloo\) stopped with the error"):
        launch_cpu(_fail_in_rank_1, 2, args=("this",))
    assert "error: rank 1 of 2 refuses this" in capfd.readouterr().err


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)


def test_cpu_ddp_gives_no_device_ids():
    seen = {}

    def create(model, *, fp16_compression=False, **kwargs):
        seen.update(kwargs)
        return model

    cpu_ddp(create)(_Tiny(), broadcast_buffers=False)
    assert seen == {"device_ids": None, "broadcast_buffers": False}
    seen.clear()
    cpu_ddp(create)(_Tiny(), device_ids=[3])
    assert seen == {"device_ids": [3]}


def _args(tmp_path, yaml_text=None, opts=(), gpus=2):
    config = ""
    if yaml_text is not None:
        config = str(tmp_path / "c.yaml")
        (tmp_path / "c.yaml").write_text(yaml_text)
    return argparse.Namespace(num_gpus=gpus, num_machines=1, config_file=config, opts=list(opts))


def test_run_device_reads_overrides_then_the_file(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("MODEL:\n  DEVICE: cpu\n")
    assert run_device(_args(tmp_path, f"_BASE_: {base}\n")) == "cpu"
    assert run_device(_args(tmp_path, f"_BASE_: {base}\nMODEL:\n  DEVICE: cuda:1\n")) == "cuda:1"
    assert run_device(_args(tmp_path, "", ["MODEL.DEVICE", "cuda", "MODEL.DEVICE", "cpu"])) == "cpu"
    assert run_device(_args(tmp_path)) == "cuda"  # Detectron2's default


def test_check_launch_on_gpus_and_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    gpu = _args(tmp_path, "MODEL:\n  DEVICE: cuda\n")
    with pytest.raises(Exception, match="--num-gpus 2 needs 2 CUDA GPUs but torch sees 1"):
        check_launch(gpu)
    cpu = _args(tmp_path, "MODEL:\n  DEVICE: cpu\n", gpus=4)
    assert uses_cpu(cpu) and check_launch(cpu) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert uses_cpu(gpu) and check_launch(gpu) is None  # no GPU: the run is on the CPU


@pytest.mark.slow
def test_train_net_two_cpu_processes(tiny_phantom, tmp_path):
    """`tools/train_net.py --num-gpus 2` trains 3 DDP iterations on the CPU; --eval-only on 2
    processes and on 1 gives the same metrics."""
    env = dict(tiny_phantom, OMP_NUM_THREADS="1")
    tool = [sys.executable, os.path.join(REPO_ROOT, "tools", "train_net.py")]
    common = ["--dist-url", "auto", "--config-file", cpu_config("faster_rcnn"), *TINY_OPTS]
    common += _EVAL_OPTS

    def run(*args):
        r = subprocess.run(
            tool + list(args), capture_output=True, text=True, env=env, timeout=600, cwd=REPO_ROOT
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    run("--num-gpus", "2", *common, "OUTPUT_DIR", str(tmp_path / "train"))
    log1 = (tmp_path / "train" / "log.txt.rank1").read_text()
    assert "Rank of current process: 1. World size: 2" in log1
    weights = str(tmp_path / "train" / "model_final.pth")
    for n in ("2", "1"):
        run(
            "--num-gpus",
            n,
            "--eval-only",
            *common,
            "MODEL.WEIGHTS",
            weights,
            "OUTPUT_DIR",
            str(tmp_path / f"eval{n}"),
        )
    metrics2, results2, gathered2 = _files(str(tmp_path / "eval2"))
    metrics1, results1, gathered1 = _files(str(tmp_path / "eval1"))
    assert sorted(gathered2) == sorted(gathered1)
    assert len(set(gathered2)) == len(gathered2) == len(DatasetCatalog.get(TEST_SET))
    assert _canonical(results2) == _canonical(results1)
    assert metrics2 == metrics1
