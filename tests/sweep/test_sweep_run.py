"""
A sweep run end to end (in this process, 1 iteration on the tiny phantom): trained and scored
on val, skipped once finished, listed by status. The val -> test selection rule against
hand-worked scores (select's test scoring runs in test_phantom_matrix.py, slow).
"""

import json
import os

import pytest

from cxr_d2.sweep.cli import main
from cxr_d2.sweep.matrix import expand, load_matrix
from cxr_d2.sweep.select import choose, write_selection
from cxr_d2.sweep.state import metrics_path, read_run, run_state

from tests.helpers import REPO_ROOT, TINY, TINY_OPTS

# TINY_OPTS without the datasets (the matrix sets them per split)
OPTS = TINY_OPTS[4:] + ["CXR.EVAL.FROC.ENABLED", "False"]


def write_matrix(tmp_path, configs, seeds=(0,), grid="", name="m.yaml", opts=OPTS):
    text = (
        f"root: {tmp_path / 'sweep'}\n"
        f"configs: {json.dumps([os.path.join(REPO_ROOT, c) for c in configs])}\n"
        f"datasets: [{TINY}]\nseeds: {list(seeds)}\nopts: {json.dumps(opts)}\n{grid}"
    )
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _evaluation(spec, dataset):
    with open(metrics_path(spec, dataset)) as f:
        return json.load(f)


def test_run_then_skip_and_status_in_process(tiny_phantom, tmp_path, capsys):
    """One real run (1 iteration, scored on val), then a second `run` that does nothing."""
    opts = OPTS + ["SOLVER.MAX_ITER", "1", "CXR.EVAL.AGNOSTIC", "False"]
    matrix = write_matrix(tmp_path, ["configs/Phantom/retinanet_R_18_FPN_cpu.yaml"], opts=opts)
    (spec,) = expand(load_matrix(matrix))
    assert run_state(spec) == "pending"
    assert main(["run", matrix, "--in-process"]) == 0
    assert run_state(spec) == "finished"
    data = read_run(spec)
    assert (data["state"], data["attempts"], data["seed"], data["point"]) == ("finished", 1, 0, {})
    assert data["command"].startswith("python tools/train_net.py --config-file ")
    assert _evaluation(spec, f"{TINY}_val")["train_datasets"] == [f"{TINY}_train"]
    assert not os.path.exists(metrics_path(spec, f"{TINY}_test"))  # test untouched by tuning
    final = os.path.join(spec.output_dir, "model_final.pth")
    trained = os.stat(final).st_mtime_ns
    capsys.readouterr()

    assert main(["run", matrix, "--in-process"]) == 0  # idempotent: nothing runs
    assert "0 to run, 1 finished (skipped)" in capsys.readouterr().out
    assert os.stat(final).st_mtime_ns == trained and read_run(spec)["attempts"] == 1
    main(["status", matrix])
    status = capsys.readouterr().out
    assert "seed0/default | finished" in status and "| final " in status


def _finished_run(spec, val=None, test=None):
    """A run folder as a finished run leaves it, with the given bbox AP on val / test."""
    os.makedirs(spec.output_dir, exist_ok=True)
    open(os.path.join(spec.output_dir, "model_final.pth"), "wb").close()
    for dataset, ap in ((spec.val, val), (spec.test, test)):
        if ap is not None:
            os.makedirs(os.path.dirname(metrics_path(spec, dataset)))
            with open(metrics_path(spec, dataset), "w") as f:
                json.dump({"dataset": dataset, "tasks": {"bbox": {"AP": ap}}}, f)


# val AP per (lr, seed): lr 0.01 -> mean 31 (sd 1.414), lr 0.02 -> mean 30.5 (sd 6.364)
VAL = {(0.01, 0): 30.0, (0.01, 1): 32.0, (0.02, 0): 35.0, (0.02, 1): 26.0}


def test_the_best_val_mean_over_seeds_is_chosen_and_test_is_never_reused(tmp_path):
    grid = "grid: {SOLVER.BASE_LR: [0.01, 0.02]}\n"
    matrix = write_matrix(tmp_path, ["configs/Phantom/retinanet_R_18_FPN_cpu.yaml"], (0, 1), grid)
    runs = expand(load_matrix(matrix))
    for r in runs:
        _finished_run(r, val=VAL[(r.point["SOLVER.BASE_LR"], r.seed)])
    chosen, rows = choose(runs, "bbox.AP", "max")
    # the single best run (lr 0.02, seed 0: 35) loses to the best mean (lr 0.01: 31)
    assert chosen == "SOLVER.BASE_LR=0.01"
    by_point = {row["folder"]: row for row in rows}
    assert by_point["SOLVER.BASE_LR=0.01"]["val_mean"] == pytest.approx(31.0)
    assert by_point["SOLVER.BASE_LR=0.01"]["val_sd"] == pytest.approx(2**0.5)
    assert by_point["SOLVER.BASE_LR=0.02"]["val_sd"] == pytest.approx(9 / 2**0.5)
    assert choose(runs, "bbox.AP", "min")[0] == "SOLVER.BASE_LR=0.02"

    for r in runs:
        if r.point["SOLVER.BASE_LR"] == 0.01:
            _finished_run(r, test=20.0 + r.seed)
    data = write_selection(runs, "bbox.AP", "max", chosen, rows)
    assert data["test"] == {0: 20.0, 1: 21.0} and data["test_mean"] == pytest.approx(20.5)
    assert [read_run(r)["selected"] for r in runs] == [True, False, True, False]

    # a test score of the other point (someone peeked): select refuses
    loser = next(r for r in runs if r.point["SOLVER.BASE_LR"] == 0.02)
    _finished_run(loser, test=40.0)
    with pytest.raises(SystemExit, match="already scored for"):
        main(["select", matrix, "--dry-run"])


def test_select_refuses_unfinished_runs(tmp_path):
    matrix = write_matrix(tmp_path, ["configs/Phantom/retinanet_R_18_FPN_cpu.yaml"])
    with pytest.raises(SystemExit, match="is pending: select needs every run"):
        main(["select", matrix])


def test_status_tells_killed_failed_and_pending_runs_apart(tmp_path, capsys):
    import subprocess
    import sys

    from cxr_d2.sweep.state import record

    grid = "grid: {SOLVER.BASE_LR: [0.01, 0.02, 0.04, 0.08]}\n"
    matrix = write_matrix(tmp_path, ["configs/Phantom/retinanet_R_18_FPN_cpu.yaml"], grid=grid)
    killed, failed, checkpointed, pending = expand(load_matrix(matrix))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that has ended: its run was killed
    record(killed, state="running", pid=gone.pid, host=__import__("socket").gethostname())
    record(failed, state="failed", error="ConfigError: SOLVER.BASE_LR is -1.0: give a rate > 0")
    os.makedirs(checkpointed.output_dir)
    with open(os.path.join(checkpointed.output_dir, "last_checkpoint"), "w") as f:
        f.write("model_0000099.pth")
    capsys.readouterr()
    main(["status", matrix])
    out = capsys.readouterr().out
    cells = {}
    for line in out.splitlines():
        if "seed0" in line:
            row = [c.strip() for c in line.split("|")[1:-1]]
            cells[row[0].rsplit("=", 1)[1]] = row[1:]
    # state, iteration, attempts, val, test, selected, error
    assert cells["0.01"][:2] == ["interrupted", "0"]
    assert cells["0.02"][0] == "failed" and "give a rate > 0" in cells["0.02"][-1]
    assert cells["0.04"][:2] == ["interrupted", "100"]  # resumes after iteration 100
    assert cells["0.08"][:2] == ["pending", "0"]
    assert out.strip().endswith("2 interrupted, 1 failed, 1 pending")
    # run picks up all but the finished: killed, failed and checkpointed resume, pending starts
    main(["run", matrix, "--dry-run"])
    assert "4 runs in" in capsys.readouterr().out
