"""
The state of a sweep's runs, read from their folders: `run.json` (what the sweep recorded)
and the files Detectron2 writes (`last_checkpoint`, `model_final.pth`, evaluation.json).

A run is finished when `model_final.pth` and `inference/<val>/evaluation.json` exist; a run
with a `last_checkpoint` but not finished was killed or preempted and resumes from it.

run.json (one per run folder; what tools/report.py can group by):
    sweep, config, dataset, train, val, test, seed, point {KEY: value}, opts,
    state (pending|submitted|running|finished|failed), attempts, host, pid, job_id,
    error (failed), selected (set by `select`), updated (UTC ISO time)
"""

import datetime
import json
import os
import socket

from ..evaluation import METRICS_FILE

__all__ = ["RUN_FILE", "read_run", "record", "run_state", "last_iteration", "is_finished",
           "metrics_path", "read_metric"]  # fmt: skip

RUN_FILE = "run.json"


def run_file(spec):
    return os.path.join(spec.output_dir, RUN_FILE)


def read_run(spec):
    """The run's run.json as a dict ({} when absent or unreadable)."""
    try:
        with open(run_file(spec), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(spec, sweep=None, **changes):
    """Update the run's run.json with `changes` (atomically: written aside, then renamed)."""
    data = read_run(spec)
    data.update(
        sweep=sweep or data.get("sweep"),
        config=spec.config,
        dataset=spec.dataset,
        train=spec.train,
        val=spec.val,
        test=spec.test,
        seed=spec.seed,
        point=spec.point,
        opts=spec.opts,
    )
    data.update(changes, updated=datetime.datetime.now(datetime.timezone.utc).isoformat())
    os.makedirs(spec.output_dir, exist_ok=True)
    tmp = run_file(spec) + f".tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, run_file(spec))
    return data


def metrics_path(spec, dataset):
    return os.path.join(spec.output_dir, "inference", dataset, METRICS_FILE)


def is_finished(spec):
    return os.path.isfile(os.path.join(spec.output_dir, "model_final.pth")) and os.path.isfile(
        metrics_path(spec, spec.val)
    )


def last_iteration(spec):
    """Iterations done by the newest checkpoint (from `last_checkpoint`), 0 when none."""
    try:
        with open(os.path.join(spec.output_dir, "last_checkpoint")) as f:
            name = f.read().strip()
    except OSError:
        return 0
    if name == "model_final.pth":
        return -1  # all of them
    digits = "".join(c for c in name if c.isdigit())
    return int(digits) + 1 if digits else 0


def _alive(pid):
    """Whether process `pid` of this host still runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def run_state(spec):
    """
    finished, failed, running, submitted, interrupted (has a checkpoint, nothing running: the
    next `run` resumes it) or pending. A run recorded as running on this host whose process is
    gone is interrupted (on SLURM, a requeued job records itself running again).
    """
    if is_finished(spec):
        return "finished"
    data = read_run(spec)
    state = data.get("state")
    if state == "running" and data.get("host") == socket.gethostname() and data.get("pid"):
        if not _alive(data["pid"]):
            return "interrupted"
    if state in ("failed", "running", "submitted"):
        return state
    return "interrupted" if last_iteration(spec) else "pending"


def read_metric(spec, dataset, metric):
    """`tasks.<task>.<name>` of the run's evaluation.json on `dataset` (metric "task.name")."""
    task, name = metric.split(".")
    try:
        with open(metrics_path(spec, dataset), encoding="utf-8") as f:
            value = json.load(f)["tasks"][task][name]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, (int, float)) else None
