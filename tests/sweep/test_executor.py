"""SLURM settings -> submitit's SlurmExecutor parameters -> #SBATCH lines; the rendezvous of a
multi-node job; the local executor's one run per GPU."""

import os
import stat
import types

import pytest
from submitit.slurm.slurm import _make_sbatch_string

from cxr_d2.errors import ConfigError
from cxr_d2.sweep import executor as sweep_executor
from cxr_d2.sweep.executor import make_submitit_executor, slurm_parameters
from cxr_d2.sweep.job import rendezvous

SETTINGS = {
    "partition": "gpu", "nodes": 2, "gpus_per_node": 8, "cpus_per_task": 64, "mem_gb": 480,
    "timeout_min": 1440, "array_parallelism": 4, "account": "cxr", "qos": "high",
    "setup": ["module load cuda/12.1", "source .venv/bin/activate"],
}  # fmt: skip


@pytest.fixture
def fake_srun(tmp_path, monkeypatch):
    """An `srun` on PATH, as on a login node (submitit looks for it); nothing is submitted."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")


def test_slurm_settings_become_sbatch_lines(tmp_path, fake_srun):
    executor = make_submitit_executor("slurm", str(tmp_path / ".submitit"), SETTINGS)
    p = executor.parameters
    assert p["ntasks_per_node"] == 1  # one task per node; it starts a process per GPU
    assert (p["nodes"], p["gpus_per_node"], p["time"], p["mem"]) == (2, 8, 1440, "480GB")
    assert p["array_parallelism"] == 4 and p["setup"] == SETTINGS["setup"]
    sbatch = _make_sbatch_string(command="python -m submitit...", folder=str(tmp_path / "%j"), **p)
    for line in (
        "#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8",
        "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=64", "#SBATCH --mem=480GB",
        "#SBATCH --time=1440", "#SBATCH --account=cxr", "#SBATCH --qos=high",
        "#SBATCH --signal=USR2@90", "module load cuda/12.1",
    ):  # fmt: skip
        assert line in sbatch.splitlines(), line


def test_unset_settings_take_the_defaults_and_bad_ones_are_one_line():
    p = slurm_parameters({"partition": "a100"})
    assert (p["nodes"], p["gpus_per_node"], p["cpus_per_task"], p["time"]) == (1, 1, 10, 1440)
    with pytest.raises(ConfigError, match="unknown key"):
        slurm_parameters({"gpus": 8})
    with pytest.raises(ConfigError, match="nodes is 0"):
        slurm_parameters({"nodes": 0})


def test_without_slurm_the_slurm_executor_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="no SLURM"):
        make_submitit_executor("slurm", str(tmp_path / ".submitit"), {})


def test_every_node_of_a_job_meets_at_the_first_nodes_port():
    envs = [
        types.SimpleNamespace(num_nodes=2, node=k, hostnames=["gpu-a", "gpu-b"], job_id="77_3")
        for k in (0, 1)
    ]
    (n0, rank0, url0), (n1, rank1, url1) = (rendezvous(e) for e in envs)
    assert (n0, rank0, n1, rank1) == (2, 0, 2, 1) and url0 == url1
    assert url0.startswith("tcp://gpu-a:") and 20000 <= int(url0.rsplit(":", 1)[1]) < 40000
    other = types.SimpleNamespace(num_nodes=2, node=0, hostnames=["gpu-a"], job_id="78_0")
    assert rendezvous(other)[2] != url0  # another job, another port
    single = types.SimpleNamespace(num_nodes=1, node=0, hostnames=["gpu-a"], job_id="9")
    assert rendezvous(single) == (1, 0, "auto")
    assert rendezvous() == (1, 0, "auto")  # outside a submitit job


def test_local_runs_one_run_per_gpu(monkeypatch):
    """Each run sees one GPU; no two runs hold the same GPU at once."""
    import threading
    import time

    held, seen, lock = set(), [], threading.Lock()

    def fake(job, gpu, log):
        with lock:
            assert gpu not in held
            held.add(gpu)
            seen.append(gpu)
        time.sleep(0.05)
        with lock:
            held.discard(gpu)
        return None if job != 3 else (job, "boom")

    monkeypatch.setattr(sweep_executor, "_subprocess", fake)
    failures = sweep_executor.run_local(list(range(6)), gpus=["0", "1", "2"])
    assert failures == [(3, "boom")] and sorted(set(seen)) == ["0", "1", "2"] and len(seen) == 6
