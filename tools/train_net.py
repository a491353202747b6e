#!/usr/bin/env python
"""
Train or evaluate a cxr-d2 model, as Detectron2's tools/train_net.py:

    python tools/train_net.py --config-file configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth

The config keys of every installed project (entry-point group `cxr_d2.projects`) are added.
"""
from detectron2.engine import default_argument_parser

from cxr_d2.engine import launch_tool, project_config_fns, train_or_evaluate


def main(args):
    return train_or_evaluate(args, extra_config_fns=project_config_fns())


if __name__ == "__main__":
    launch_tool(main, default_argument_parser().parse_args())
