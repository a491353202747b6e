"""
Where a sweep's runs execute:

- `local`: one `tools/train_net.py` process after another (or, with `gpus`, one run per GPU at
  a time, each seeing its GPU as CUDA_VISIBLE_DEVICES); `in_process` trains in this process.
- `submitit-local`: submitit's LocalExecutor, each run a job process (as on SLURM, locally).
- `slurm`: submitit's SlurmExecutor, the runs one job array; each job holds `nodes` nodes of
  `gpus_per_node` GPUs, one task per node that starts a process per GPU (Detectron2's launch,
  job.py), and is requeued with `--resume` on preemption or at its time limit.

The matrix's `slurm:` mapping and the command line set the SLURM parameters (SLURM_KEYS);
submitit writes them as the `#SBATCH` lines of the job array.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import submitit

from ..errors import ConfigError
from .state import record

__all__ = ["SLURM_KEYS", "slurm_parameters", "make_submitit_executor", "run_local", "run_submitit"]

logger = logging.getLogger(__name__)

# matrix `slurm:` key -> (submitit SlurmExecutor parameter, type, sbatch option it becomes)
SLURM_KEYS = {
    "partition": ("partition", str, "--partition"),
    "nodes": ("nodes", int, "--nodes"),
    "gpus_per_node": ("gpus_per_node", int, "--gpus-per-node"),
    "cpus_per_task": ("cpus_per_task", int, "--cpus-per-task"),
    "mem_gb": ("mem", int, "--mem (GB)"),
    "timeout_min": ("time", int, "--time (minutes)"),
    "array_parallelism": ("array_parallelism", int, "--array=0-N%P"),
    "account": ("account", str, "--account"),
    "qos": ("qos", str, "--qos"),
    "constraint": ("constraint", str, "--constraint"),
    "exclude": ("exclude", str, "--exclude"),
    "comment": ("comment", str, "--comment"),
    "signal_delay_s": ("signal_delay_s", int, "--signal=USR2@S"),
    "setup": ("setup", list, "lines run before the job (module load, source venv)"),
}
SLURM_DEFAULTS = {"nodes": 1, "gpus_per_node": 1, "cpus_per_task": 10, "timeout_min": 24 * 60}


def slurm_parameters(settings):
    """
    submitit SlurmExecutor parameters from the matrix's `slurm:` settings (command-line values
    merged in): one task per node, the job's name, memory in GB as SLURM's "<n>GB".
    """
    unknown = sorted(set(settings) - set(SLURM_KEYS))
    if unknown:
        raise ConfigError(f"slurm: unknown key(s) {unknown}; use {sorted(SLURM_KEYS)}")
    params = {"ntasks_per_node": 1, "job_name": "cxr_d2_sweep"}
    for key, value in {**SLURM_DEFAULTS, **settings}.items():
        name, kind, _ = SLURM_KEYS[key]
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and value < 1):
            raise ConfigError(f"slurm: {key} is {value!r}; give a {kind.__name__}")
        params[name] = f"{value}GB" if key == "mem_gb" else value
    return params


def make_submitit_executor(kind, folder, settings=None):
    """A submitit executor writing its job files under `folder` (`<root>/.submitit`)."""
    if kind == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10)
        except RuntimeError:  # submitit looks for srun
            raise ConfigError(
                "--executor slurm: this machine has no SLURM (srun not found); run on the "
                "cluster's login node, or use --executor local / submitit-local"
            ) from None
        executor.update_parameters(**slurm_parameters(settings or {}))
        return executor
    executor = submitit.LocalExecutor(folder=folder)
    timeout = (settings or {}).get("timeout_min", SLURM_DEFAULTS["timeout_min"])
    executor.update_parameters(timeout_min=timeout, gpus_per_node=0)
    return executor


def run_submitit(executor, jobs, wait=True):
    """Submit `jobs` (RunJob) as one array; with `wait`, wait and return the failures."""
    with executor.batch():
        submitted = [executor.submit(job) for job in jobs]
    for job, sub in zip(jobs, submitted):
        if not job.eval_only:
            record(job.spec, job.sweep, state="submitted", job_id=sub.job_id)
        logger.info(f"submitted {sub.job_id}: {job.spec.output_dir}")
    if not wait:
        return []
    failures = []
    for job, sub in zip(jobs, submitted):
        try:
            sub.result()
        except Exception as e:  # submitit's FailedJobError carries the job's traceback
            failures.append((job.spec, str(e).strip().splitlines()[-1] if str(e) else repr(e)))
    return failures


def run_local(jobs, gpus=(), in_process=False, log=print):
    """
    Run `jobs` here: in this process, or one train_net process at a time (per GPU in `gpus`
    when given). Returns the failures [(spec, last line of the error)].
    """
    if in_process:
        failures = []
        for job in jobs:
            try:
                job()
            except Exception as e:
                failures.append((job.spec, f"{type(e).__name__}: {e}"))
        return failures
    slots = list(gpus) or [None]
    free, lock = list(slots), threading.Lock()

    def run(job):
        with lock:
            gpu = free.pop()
        try:
            return _subprocess(job, gpu, log)
        finally:
            with lock:
                free.append(gpu)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        results = list(pool.map(run, jobs))
    return [r for r in results if r]


def _subprocess(job, gpu, log):
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.makedirs(job.spec.output_dir, exist_ok=True)
    out = os.path.join(job.spec.output_dir, "sweep_eval.log" if job.eval_only else "sweep.log")
    log(f"{'evaluating' if job.eval_only else 'training'} {job.spec.output_dir}")
    with open(out, "a") as f:
        code = subprocess.call(
            [sys.executable, "-m", "cxr_d2.sweep.run_one", *_job_argv(job)],
            stdout=f, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    if code:
        return job.spec, f"exit status {code}: {_last_line(out)} (see {out})"
    return None


def _job_argv(job):
    argv = [json.dumps(dataclasses.asdict(job.spec))]
    return argv + (["--eval-only"] if job.eval_only else []) + ["--sweep", job.sweep or ""]


def _last_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]
