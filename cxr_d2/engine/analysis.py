"""
`tools/analyze_model.py`, as Detectron2's: FLOPs and activations of a model on the first
`--num-inputs` images of DATASETS.TEST[0] (fvcore's counters through
`detectron2.utils.analysis`, which traces the model with `TracingAdapter`), its parameter count
table, and its structure.

fvcore counts one fused multiply-add as one flop, and only the operators it has a handle for
(convolutions, matmuls, batch/group norm, upsampling, ...); elementwise ops, NMS and the
post-processing count nothing. FLOPs and activations depend on the input and, for the detectors
whose later stages run on what the earlier ones kept (R-CNN heads, NMS), on the weights.
"""
import argparse
import sys
import tempfile
from collections import Counter

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.utils.analysis import (
    FlopCountAnalysis,
    activation_count_operators,
    parameter_count_table,
)
from fvcore.nn import flop_count_table

from ..errors import ConfigError, CXRError
from .checkpoint import AtomicCheckpointer
from .trainer import Trainer

__all__ = [
    "analyze_model_parser",
    "build_analysis_model",
    "count_flops",
    "count_activations",
    "count_parameters",
    "main",
]

TASKS = ("flop", "activation", "parameter", "structure")


def analyze_model_parser():
    p = argparse.ArgumentParser(
        description="FLOPs, activations, parameters or structure of a cxr-d2 model",
        epilog="e.g. python tools/analyze_model.py --config-file CFG --tasks flop parameter "
        "--num-inputs 10 MODEL.WEIGHTS output/model_final.pth",
    )
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--tasks", required=True, nargs="+", metavar="{" + ",".join(TASKS) + "}",
                   help="one or more; config overrides may follow them directly")
    p.add_argument("-n", "--num-inputs", type=int, default=100,
                   help="images of DATASETS.TEST[0] to average flop and activation counts over")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def build_analysis_model(cfg):
    """The model of `cfg` in eval mode, with MODEL.WEIGHTS loaded when given (else as built)."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    return model.eval()


def _inputs(cfg, num_inputs):
    """The first `num_inputs` batches (lists of one dataset dict) of the test loader."""
    if not cfg.DATASETS.TEST:
        raise ConfigError("DATASETS.TEST is empty: flop and activation counts run on its images; "
                          "set DATASETS.TEST")
    loader = Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    for idx, batch in enumerate(loader):
        if idx >= num_inputs:
            return
        yield batch


def count_flops(model, batches):
    """
    Returns (the FlopCountAnalysis of the first batch, Counter of flops per operator summed
    over batches, list of each batch's total flops).
    """
    first, by_operator, totals = None, Counter(), []
    with torch.no_grad():
        for batch in batches:
            flops = FlopCountAnalysis(model, batch)
            if first is None:
                first = flops
            else:
                flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_operator += flops.by_operator()
            totals.append(flops.total())
    return first, by_operator, totals


def count_activations(model, batches):
    """Returns (Counter of million activations per operator summed over batches, list of each
    batch's total)."""
    by_operator, totals = Counter(), []
    with torch.no_grad():
        for batch in batches:
            count = activation_count_operators(model, batch)
            by_operator += count
            totals.append(sum(count.values()))
    return by_operator, totals


def count_parameters(model):
    """The number of parameters of `model` (every element of every parameter tensor)."""
    return sum(p.numel() for p in model.parameters())


def _mean_std(values, scale=1.0):
    return np.mean(values) / scale, np.std(values) / scale


def do_flop(cfg, model, num_inputs):
    first, by_operator, totals = count_flops(model, _inputs(cfg, num_inputs))
    if first is None:
        raise ConfigError(f"DATASETS.TEST[0] {cfg.DATASETS.TEST[0]} yielded no image")
    n = len(totals)
    print("Flops table computed from only one input sample:\n" + flop_count_table(first))
    print("Average GFlops for each type of operators:\n"
          + str([(k, v / n / 1e9) for k, v in by_operator.items()]))
    print("Total flops of input 0: {}".format(totals[0]))
    print("Total GFlops over {} inputs: {:.3f}±{:.3f}".format(n, *_mean_std(totals, 1e9)))


def do_activation(cfg, model, num_inputs):
    by_operator, totals = count_activations(model, _inputs(cfg, num_inputs))
    if not totals:
        raise ConfigError(f"DATASETS.TEST[0] {cfg.DATASETS.TEST[0]} yielded no image")
    n = len(totals)
    print("(Million) Activations for each type of operators:\n"
          + str([(k, v / n) for k, v in by_operator.items()]))
    print("Total (million) activations over {} inputs: {:.3f}±{:.3f}".format(
        n, *_mean_std(totals)))


def do_parameter(cfg, model, num_inputs):
    print("Parameter count:\n" + parameter_count_table(model, max_depth=5))
    print("Total parameters: {}".format(count_parameters(model)))


def do_structure(cfg, model, num_inputs):
    print("Model structure:\n" + str(model))


def _split_tasks(parser, args):
    """`--tasks flop MODEL.WEIGHTS f` (overrides right after the tasks, as in Detectron2's
    usage): the leading task names are the tasks, the rest goes before the other overrides."""
    n = next((i for i, t in enumerate(args.tasks) if t not in TASKS), len(args.tasks))
    if n == 0:
        parser.error(f"argument --tasks: invalid choice: {args.tasks[0]!r} (choose from "
                     + ", ".join(TASKS) + ")")
    args.opts = args.tasks[n:] + list(args.opts)
    args.tasks = args.tasks[:n]
    return args


_TASK_FNS = {"flop": do_flop, "activation": do_activation, "parameter": do_parameter,
             "structure": do_structure}


def main(argv=None):
    from ..predict.config import tool_config

    parser = analyze_model_parser()
    args = _split_tasks(parser, parser.parse_args(argv))
    try:
        # nothing is written: OUTPUT_DIR only needs to pass tool_config's writability check
        cfg = tool_config(args.config_file, list(args.opts) + ["DATALOADER.NUM_WORKERS", "0"],
                          tempfile.gettempdir())
        model = build_analysis_model(cfg)
        for task in args.tasks:
            _TASK_FNS[task](cfg, model, args.num_inputs)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
