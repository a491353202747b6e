#!/usr/bin/env python
"""
Train or evaluate a cxr-d2 model, as Detectron2's tools/train_net.py:

    python tools/train_net.py --config-file configs/Phantom/faster_rcnn_R_18_FPN_cpu.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/model_final.pth
    python tools/train_net.py --config-file ... --eval-only --tta MODEL.WEIGHTS ...
    python tools/train_net.py --config-file ... --eval-only --ensemble A.yaml@a.pth B.yaml@b.pth:2

`--tta` and `--ensemble` (with `--eval-only`): docs/predict.md. The config keys of every
installed project (entry-point group `cxr_d2.projects`) are added.
"""
from detectron2.engine import default_argument_parser

from cxr_d2.engine import launch_tool, project_config_fns, train_or_evaluate
from cxr_d2.predict.tta import add_tta_arguments, apply_tta_arguments


def main(args):
    return train_or_evaluate(apply_tta_arguments(args), extra_config_fns=project_config_fns())


if __name__ == "__main__":
    launch_tool(main, add_tta_arguments(default_argument_parser()).parse_args())
