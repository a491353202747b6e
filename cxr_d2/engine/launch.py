"""What `tools/train_net.py` and the projects' `train_net.py` share: train or evaluate, launched."""
import sys

import detectron2.utils.comm as comm
import torch
from detectron2.engine import launch
from detectron2.evaluation import verify_results

from ..errors import ConfigError, CXRError
from ..predict.ensemble import test_ensemble
from ..predict.tta import test_with_tta
from .checkpoint import AtomicCheckpointer
from .cpu_launch import launch_cpu, uses_cpu
from .setup import setup_cfg
from .trainer import Trainer

__all__ = ["train_or_evaluate", "launch_tool", "check_launch"]


def train_or_evaluate(args, extra_config_fns=()):
    """
    Detectron2's train_net `main`: `--eval-only` loads MODEL.WEIGHTS and tests, otherwise the
    Trainer trains (resuming with `--resume`).

    Args:
        args: `default_argument_parser()` arguments.
        extra_config_fns: more `add_x_config(cfg)` functions (the projects').
    """
    cfg = setup_cfg(args, extra_config_fns=extra_config_fns)
    if args.eval_only:
        if getattr(args, "ensemble", None):  # tools/train_net.py --ensemble
            return test_ensemble(Trainer, cfg, args.ensemble)
        model = Trainer.build_model(cfg)
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # tools/train_net.py --tta
            res.update(test_with_tta(Trainer, cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_tool(main, args):
    """`launch(main, ...)` with the parser's distributed options; a CXRError ends the tool with
    one line (`error: ...`) and exit status 1. On the CPU (MODEL.DEVICE cpu, or no CUDA GPU),
    `--num-gpus N` runs N processes joined by gloo (`launch_cpu`)."""
    try:
        check_launch(args)
        distributed = args.num_gpus * args.num_machines > 1
        launcher = launch_cpu if distributed and uses_cpu(args) else launch
        return launcher(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except CXRError as e:
        sys.exit(f"error: {e}")


def check_launch(args):
    """Refuse `--num-gpus`/`--num-machines` that this machine's GPUs cannot run, before any
    process is spawned (Detectron2 would assert in each child). On the CPU any number of
    processes runs (`launch_cpu`)."""
    if args.num_gpus < 1 or args.num_machines < 1:
        raise ConfigError(
            f"--num-gpus {args.num_gpus} --num-machines {args.num_machines}: give at least 1 of "
            "each (--num-gpus 1 runs on one GPU or the CPU)"
        )
    if args.num_gpus * args.num_machines == 1 or uses_cpu(args):
        return
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if args.num_gpus > found:
        raise ConfigError(
            f"--num-gpus {args.num_gpus} needs {args.num_gpus} CUDA GPUs but torch sees "
            f"{found} on this machine; give --num-gpus {max(found, 1)}"
        )
