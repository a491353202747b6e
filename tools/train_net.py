#!/usr/bin/env python
"""
Train or evaluate a cxr-d2 model, as Detectron2's tools/train_net.py:

    python tools/train_net.py --config-file configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
"""
import sys

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results

from cxr_d2 import CXRError, Trainer, setup_cfg
from cxr_d2.engine.projects import project_config_fns


def main(args):
    # the config keys of every installed project (entry-point group cxr_d2.projects)
    cfg = setup_cfg(args, extra_config_fns=project_config_fns())
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
