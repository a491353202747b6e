"""
Multi-process training and evaluation on the CPU: Detectron2's `launch` with the gloo backend.

Detectron2 0.6's `launch` asserts CUDA in each worker and joins an NCCL process group, and its
`create_ddp_model` passes `device_ids=[local rank]`, which DistributedDataParallel refuses for a
module on the CPU. `launch_cpu` spawns the workers itself, as `detectron2.engine.launch` does
(same arguments, same local process group in `comm._LOCAL_PROCESS_GROUP`), but joins a gloo
group and, in the workers only, wraps `create_ddp_model` so that a CPU model gets no
`device_ids`. Everything else (the training sampler's and InferenceSampler's per-rank shards,
`comm.gather` of the evaluator) is Detectron2's, unchanged.
"""

import functools
import logging
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.config import CfgNode
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm

from ..errors import CXRError

__all__ = ["DEFAULT_TIMEOUT", "WorkerFailed", "launch_cpu", "run_device", "uses_cpu", "cpu_ddp"]

logger = logging.getLogger(__name__)

# Of a collective operation (gloo), as Detectron2's DEFAULT_TIMEOUT.
DEFAULT_TIMEOUT = timedelta(minutes=30)
# Exit status of a worker that printed a CXRError as its one line.
_CXR_ERROR_EXIT = 3


class WorkerFailed(CXRError):
    """A worker process of a multi-process CPU run exited with an error."""


def run_device(args):
    """
    MODEL.DEVICE as the run will see it, read without building the config: the last
    `MODEL.DEVICE` of the command-line overrides, else the config file's (through its `_BASE_`
    chain), else Detectron2's default "cuda". A file that cannot be read gives "" (the workers'
    config setup reports it).
    """
    opts = list(getattr(args, "opts", None) or [])
    for key, value in reversed(list(zip(opts[::2], opts[1::2]))):
        if key == "MODEL.DEVICE":
            return str(value)
    if getattr(args, "config_file", ""):
        try:
            loaded = CfgNode.load_yaml_with_base(args.config_file, allow_unsafe=False)
        except Exception:  # yaml, OSError, a broken _BASE_: setup_cfg names the problem
            return ""
        device = (loaded.get("MODEL") or {}).get("DEVICE")
        if device is not None:
            return str(device)
    return "cuda"


def uses_cpu(args):
    """Whether the run's processes train on the CPU: MODEL.DEVICE "cpu", or no CUDA GPU."""
    return not torch.cuda.is_available() or run_device(args).startswith("cpu")


def cpu_ddp(create_ddp_model):
    """
    `create_ddp_model` that gives DistributedDataParallel `device_ids=None` for a module whose
    parameters are on the CPU (DDP's rule for CPU modules); otherwise unchanged.
    """

    @functools.wraps(create_ddp_model)
    def wrapped(model, *, fp16_compression=False, **kwargs):
        params = list(model.parameters())
        if params and params[0].device.type == "cpu":
            kwargs.setdefault("device_ids", None)
        return create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)

    wrapped.__wrapped_for_cpu__ = True
    return wrapped


def _install_cpu_ddp():
    """Wrap `create_ddp_model` where DefaultTrainer (and `detectron2.engine`) look it up."""
    import detectron2.engine as d2_engine

    if not getattr(d2_defaults.create_ddp_model, "__wrapped_for_cpu__", False):
        d2_defaults.create_ddp_model = cpu_ddp(d2_defaults.create_ddp_model)
    d2_engine.create_ddp_model = d2_defaults.create_ddp_model


def launch_cpu(
    main_func,
    num_processes,
    num_machines=1,
    machine_rank=0,
    dist_url="auto",
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """
    Run `main_func(*args)` in `num_processes` CPU processes per machine, all in one gloo
    process group (Detectron2's `launch` with processes for GPUs).

    Args:
        main_func: called in every worker once the group is joined; picklable (a module-level
            function).
        num_processes (int): processes on this machine; a world of 1 runs `main_func` here.
        num_machines, machine_rank: as `launch`.
        dist_url (str): "auto" (a free port on 127.0.0.1, one machine only) or a `tcp://` URL.
        args (tuple): arguments of `main_func`.
        timeout (timedelta): of each collective operation.

    Raises:
        WorkerFailed: a worker stopped on a CXRError (it printed it as one line `error: ...`;
            the others are ended). Any other failure is torch's ProcessRaisedException (with
            the worker's traceback) or ProcessExitedException, as with Detectron2's `launch`.
    """
    world_size = num_processes * num_machines
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines > 1:
            raise WorkerFailed("--dist-url auto works on one machine; give tcp://HOST:PORT")
        from detectron2.engine.launch import _find_free_port

        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    context = mp.start_processes(
        _cpu_worker,
        args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout),
        nprocs=num_processes,
        join=False,
        daemon=False,
        start_method="spawn",
    )
    try:
        while not context.join():
            pass
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        # The others may fail in a collective before the spawner sees the worker with the
        # CXRError exit; its one line is the cause. Anything else keeps its traceback.
        failed = [i for i, p in enumerate(context.processes) if p.exitcode == _CXR_ERROR_EXIT]
        if not failed:
            raise
        raise WorkerFailed(
            f"worker {failed[0]} of {num_processes} (CPU, gloo) stopped with the error above"
        ) from None


def _cpu_worker(
    local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args, timeout
):
    """One process: join the gloo group, make the local groups, share the cores, run."""
    dist.init_process_group(
        backend="gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=machine_rank * per_machine + local_rank,
        timeout=timeout,
    )
    # As detectron2.engine.launch._distributed_worker: every rank creates every machine's group.
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // per_machine):
        group = dist.new_group(list(range(i * per_machine, (i + 1) * per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun: the cores shared, not oversubscribed
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_machine))
    _install_cpu_ddp()
    comm.synchronize()
    try:
        main_func(*args)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        os._exit(_CXR_ERROR_EXIT)  # now: the others then fail on the closed connection
    dist.destroy_process_group()
