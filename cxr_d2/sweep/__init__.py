"""
Sweeps: a matrix file (configs x datasets x seeds x searched config keys) expanded into
tools/train_net.py runs, each in its own OUTPUT_DIR with a run.json, executed here, through
submitit's LocalExecutor or on SLURM; `select` picks on val and scores test once.
"""

from .executor import SLURM_KEYS, make_submitit_executor, run_local, run_submitit, slurm_parameters
from .job import RunJob, rendezvous
from .matrix import Matrix, RunSpec, expand, load_matrix, point_name
from .select import SELECTION_FILE, choose, write_selection
from .state import RUN_FILE, is_finished, read_run, run_state

__all__ = [
    "Matrix", "RUN_FILE", "RunJob", "RunSpec", "SELECTION_FILE", "SLURM_KEYS", "choose",
    "expand", "is_finished", "load_matrix", "make_submitit_executor", "point_name", "read_run",
    "rendezvous", "run_local", "run_state", "run_submitit", "slurm_parameters", "write_selection",
]  # fmt: skip
