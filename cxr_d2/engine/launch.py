"""What `tools/train_net.py` and the projects' `train_net.py` share: train or evaluate, launched."""
import sys

import detectron2.utils.comm as comm
from detectron2.engine import launch
from detectron2.evaluation import verify_results

from ..errors import CXRError
from .checkpoint import AtomicCheckpointer
from .setup import setup_cfg
from .trainer import Trainer

__all__ = ["train_or_evaluate", "launch_tool"]


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
        model = Trainer.build_model(cfg)
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_tool(main, args):
    """`launch(main, ...)` with the parser's distributed options; a CXRError ends the tool with
    one line (`error: ...`) and exit status 1."""
    try:
        return launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except CXRError as e:
        sys.exit(f"error: {e}")
