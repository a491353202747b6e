#!/usr/bin/env python
"""
SipMask training and evaluation, as Detectron2's projects/*/train_net.py:

    python projects/SipMask/train_net.py \
        --config-file projects/SipMask/configs/sipmask_R_18_FPN_cpu.yaml
    python projects/SipMask/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model_final.pth

`sipmask` is importable from this folder, or anywhere once `pip install -e .` has installed it.
"""
import sys

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results

from cxr_d2 import CXRError, Trainer, setup_cfg
from sipmask import add_sipmask_config


def setup(args):
    """get_cfg -> add_cxr_config -> add_sipmask_config -> merge -> checks -> freeze."""
    return setup_cfg(args, extra_config_fns=(add_sipmask_config,))


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except CXRError as e:
        sys.exit(f"error: {e}")
