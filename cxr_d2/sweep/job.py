"""
One run of a sweep as a job: `tools/train_net.py`'s train-or-evaluate, launched through
Detectron2's `launch` on every GPU of every node the job holds, resuming from the run's last
good checkpoint. A submitit `Checkpointable`: on preemption or time limit submitit requeues
the same job, which resumes (`--resume` is always on; without a checkpoint it starts anew).
"""

import hashlib
import logging
import os
import shlex
import socket

import submitit
import torch
from detectron2.engine import default_argument_parser, launch

from .state import read_run, record

__all__ = ["RunJob", "train_net_argv", "rendezvous"]

logger = logging.getLogger(__name__)


def train_net_argv(config, opts, eval_only=False):
    """The tools/train_net.py arguments of a run: training always resumes (from scratch when
    there is no checkpoint); `eval_only` scores the MODEL.WEIGHTS its opts name."""
    return ["--config-file", config] + (["--eval-only"] if eval_only else ["--resume"]) + opts


def _train_main(args):
    """tools/train_net.py's main (module level: `launch` pickles it into each process)."""
    from ..engine import project_config_fns, train_or_evaluate

    return train_or_evaluate(args, extra_config_fns=project_config_fns())


def rendezvous(env=None):
    """
    (num_machines, machine_rank, dist_url) of this process: SLURM's nodes through submitit's
    JobEnvironment (the first node hosts the rendezvous, on a port derived from the job id so
    every node agrees), or one machine when not in a submitit job.
    """
    if env is None:
        try:
            env = submitit.JobEnvironment()
        except RuntimeError:
            return 1, 0, "auto"
    if env.num_nodes == 1:
        return 1, 0, "auto"
    port = 20000 + int(hashlib.sha1(str(env.job_id).encode()).hexdigest(), 16) % 20000
    return env.num_nodes, env.node, f"tcp://{env.hostnames[0]}:{port}"


class RunJob(submitit.helpers.Checkpointable):
    """
    Train (or, `eval_only`, score MODEL.WEIGHTS on the test split) one RunSpec in this process.
    Its `checkpoint` (submitit's, on SIGUSR2 / time limit) requeues it unchanged.
    """

    def __init__(self, spec, sweep=None, eval_only=False):
        self.spec, self.sweep, self.eval_only = spec, sweep, eval_only

    def argv(self):
        opts = self.spec.test_opts() if self.eval_only else self.spec.train_opts()
        return train_net_argv(self.spec.config, opts, self.eval_only)

    def __call__(self):
        num_machines, machine_rank, dist_url = rendezvous()
        num_gpus = max(1, torch.cuda.device_count())
        launch_opts = ["--num-gpus", str(num_gpus), "--num-machines", str(num_machines),
                       "--machine-rank", str(machine_rank)]  # fmt: skip
        args = default_argument_parser().parse_args(launch_opts + self.argv())
        main_node = machine_rank == 0
        if main_node and not self.eval_only:
            attempts = _attempts(self.spec) + 1
            record(self.spec, self.sweep, state="running", attempts=attempts, pid=os.getpid(),
                   host=socket.gethostname(), job_id=_job_id(), command=self.command())  # fmt: skip
        try:
            launch(_train_main, num_gpus, num_machines=num_machines, machine_rank=machine_rank,
                   dist_url=dist_url, args=(args,))  # fmt: skip
        except Exception as e:  # not SystemExit: submitit's requeue on USR2 is no failure
            if main_node and not self.eval_only:
                record(self.spec, self.sweep, state="failed", error=f"{type(e).__name__}: {e}")
            raise
        if main_node and not self.eval_only:
            record(self.spec, self.sweep, state="finished", error=None)
        return self.spec.output_dir

    def command(self):
        """The equivalent command line, for run.json and the logs."""
        return shlex.join(["python", "tools/train_net.py"] + self.argv())


def _attempts(spec):
    return int(read_run(spec).get("attempts") or 0)


def _job_id():
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:
        return None
