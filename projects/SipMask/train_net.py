#!/usr/bin/env python
"""
SipMask training and evaluation, as Detectron2's projects/*/train_net.py:

    python projects/SipMask/train_net.py \
        --config-file projects/SipMask/configs/sipmask_R_18_FPN_cpu.yaml
    python projects/SipMask/train_net.py --config-file ... --eval-only MODEL.WEIGHTS model_final.pth

`sipmask` is importable from this folder, or anywhere once `pip install -e .` has installed it.
"""
from detectron2.engine import default_argument_parser

from cxr_d2.engine import launch_tool, setup_cfg, train_or_evaluate
from sipmask import add_sipmask_config

CONFIG_FNS = (add_sipmask_config,)


def setup(args):
    """get_cfg -> add_cxr_config -> add_sipmask_config -> merge -> checks -> freeze."""
    return setup_cfg(args, extra_config_fns=CONFIG_FNS)


def main(args):
    return train_or_evaluate(args, extra_config_fns=CONFIG_FNS)


if __name__ == "__main__":
    launch_tool(main, default_argument_parser().parse_args())
