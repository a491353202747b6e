"""
The small phantom matrix end to end (slow: 8 trainings and 4 test scorings): two detectors x
two seeds x two learning rates, the first run killed after its first checkpoint by SIGKILL
and resumed; the rest through submitit's LocalExecutor; status, select (val -> test once) and
tools/report.py's intervals over seeds and test images.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from cxr_d2.evaluation.report import collect, write_report
from cxr_d2.sweep.cli import main
from cxr_d2.sweep.matrix import expand, load_matrix
from cxr_d2.sweep.state import read_run, run_state

from tests.helpers import REPO_ROOT, TINY
from tests.sweep.test_sweep_run import OPTS, write_matrix

CONFIGS = [
    "configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml",
    "configs/Phantom/retinanet_R_18_FPN_cpu.yaml",
]
# 8 iterations, a checkpoint every 2 (the kill lands after one)
MATRIX_OPTS = [v if v not in ("3", "1000") else {"3": "8", "1000": "2"}[v] for v in OPTS]


def _kill_after_first_checkpoint(matrix, run, env, timeout=900):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "sweep.py"), "run", matrix],
        env=env, cwd=REPO_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + timeout
    try:
        while not glob.glob(os.path.join(run.output_dir, "model_000000*.pth")):
            assert proc.poll() is None, "the sweep ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow
def test_phantom_matrix_killed_resumed_selected_and_reported(
    tiny_phantom, tmp_path, monkeypatch, capsys
):
    for key, value in tiny_phantom.items():
        if key == "CXR_DATASETS":
            monkeypatch.setenv(key, value)  # the job processes read the same films
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    grid = "grid: {SOLVER.BASE_LR: [0.005, 0.01]}\nselect: {metric: bbox.AP50, mode: max}\n"
    matrix = write_matrix(tmp_path, CONFIGS, (0, 1), grid, opts=MATRIX_OPTS)
    runs = expand(load_matrix(matrix))
    assert len(runs) == 8
    first = runs[0]

    _kill_after_first_checkpoint(matrix, first, {**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120  # the killed training process may take a moment to go
    while run_state(first) == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert run_state(first) == "interrupted" and read_run(first)["attempts"] == 1
    killed_at = [f for f in os.listdir(first.output_dir) if f.startswith("model_0")]

    assert main(["run", matrix, "--executor", "submitit-local"]) == 0
    assert [run_state(r) for r in runs] == ["finished"] * 8
    assert read_run(first)["attempts"] == 2 and read_run(runs[1])["attempts"] == 1
    with open(os.path.join(first.output_dir, "log.txt")) as f:
        log = f.read()
    loaded = [k for k in killed_at if f"Loading from {os.path.join(first.output_dir, k)}" in log]
    assert len(loaded) == 1  # the newest intact checkpoint of the killed attempt
    resumed_at = int(loaded[0][len("model_") : -len(".pth")]) + 1
    assert "Starting training from iteration 0" in log and resumed_at >= 2
    assert f"Starting training from iteration {resumed_at}" in log

    capsys.readouterr()
    main(["status", matrix])
    assert capsys.readouterr().out.strip().endswith("8 finished")

    assert main(["select", matrix, "--executor", "submitit-local"]) == 0
    chosen = [r for r in runs if read_run(r).get("selected")]
    assert len(chosen) == 4 and {r.stem for r in chosen} == {
        os.path.basename(c)[:-5] for c in CONFIGS
    }
    tested = [
        r
        for r in runs
        if os.path.isfile(
            os.path.join(r.output_dir, "inference", f"{TINY}_test", "evaluation.json")
        )
    ]
    assert tested == chosen  # test scored for the chosen point only
    test_file = os.path.join(chosen[0].output_dir, "inference", f"{TINY}_test", "evaluation.json")
    scored = os.stat(test_file).st_mtime_ns
    assert main(["select", matrix, "--executor", "submitit-local"]) == 0
    assert os.stat(test_file).st_mtime_ns == scored  # test is scored once

    records, skipped = collect([r.output_dir for r in chosen])
    assert not skipped
    written, _ = write_report(records, skipped, str(tmp_path / "report"), resamples=50)
    uncertainty = glob.glob(str(tmp_path / "report" / "table1_class_specific_uncertainty.md"))
    with open(uncertainty[0]) as f:
        text = f.read()
    assert f"{TINY}_test" in text and "±" in text and "2 (0, 1)" in text
