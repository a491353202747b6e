"""
`tools/export_model.py`, as Detectron2's tools/deploy/export_model.py: export a model to
TorchScript or ONNX, run the exported file on a sample image, compare its detections with the
PyTorch model's and print the largest box difference; optionally evaluate the exported model
on DATASETS.TEST[0] with cxr-d2's evaluators.
"""
import argparse
import os
import sys

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.evaluation import inference_on_dataset, print_csv_format

from ..data.dicom import read_image
from ..data.mapper import CXRDatasetMapper
from ..engine.analysis import build_analysis_model
from ..engine.trainer import Trainer
from ..errors import ConfigError, CXRError
from .compare import compare_instances
from .exporter import METHODS, ONNX_OPSET, export_model
from .runtime import load_exported
from .spec import FORMATS

__all__ = ["export_parser", "sample_inputs", "main"]


def export_parser():
    p = argparse.ArgumentParser(
        description="Export a cxr-d2 model to TorchScript or ONNX and check it against PyTorch",
        epilog="e.g. python tools/export_model.py --config-file CFG --format onnx --output DIR "
        "MODEL.WEIGHTS output/model_final.pth",
    )
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--format", choices=FORMATS, default="onnx")
    p.add_argument("--export-method", choices=METHODS, default="tracing",
                   help="scripting: TorchScript only, R-CNNs and RetinaNet")
    p.add_argument("--opset", type=int, default=ONNX_OPSET,
                   help="ONNX opset (19 for deformable convolution, exported as DeformConv)")
    p.add_argument("--sample-image", metavar="FILE",
                   help="PNG, JPEG or DICOM traced and checked (default: the first image of "
                   "DATASETS.TEST[0])")
    p.add_argument("--run-eval", action="store_true",
                   help="evaluate the exported model on DATASETS.TEST[0] and print the metrics")
    p.add_argument("--output", required=True, metavar="DIR",
                   help="folder for model.ts/model.onnx, model.json and evaluation results "
                   "(TorchScript: also Detectron2's dump_torchscript_IR text files)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def sample_inputs(cfg, sample_image=None):
    """[{"image": (C, H, W) uint8 resized as the test mapper does, "height", "width"}] of
    `sample_image`, or the first of DATASETS.TEST[0]'s test loader."""
    if sample_image:
        image = read_image(sample_image, cfg.INPUT.FORMAT)
        aug = T.AugInput(image)
        CXRDatasetMapper(cfg, is_train=False).augmentations(aug)
        resized = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return [{"image": resized, "height": image.shape[0], "width": image.shape[1]}]
    if not cfg.DATASETS.TEST:
        raise ConfigError("DATASETS.TEST is empty and no --sample-image was given: give one")
    return next(iter(Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])))


def check_against_pytorch(model, exported, inputs):
    """compare_instances(exported, PyTorch) on the first of `inputs`."""
    x = inputs[0]
    height, width = x.get("height"), x.get("width")
    got = exported(x["image"], height, width)
    with torch.no_grad():
        ref = model([{"image": x["image"], "height": height, "width": width}])[0]["instances"]
    return compare_instances(got, ref)


def run_eval(cfg, exported, output_dir):
    """The exported model evaluated on DATASETS.TEST[0]; returns the metrics."""
    dataset = cfg.DATASETS.TEST[0]
    loader = Trainer.build_test_loader(cfg, dataset)
    folder = os.path.join(output_dir, "inference", dataset)
    evaluator = Trainer.build_evaluator(cfg, dataset, folder)
    return inference_on_dataset(exported.predict_batch, loader, evaluator)


def main(argv=None):
    """The tool; returns the exit status (1: an error, or detections that differ)."""
    from ..predict.config import tool_config

    args = export_parser().parse_args(argv)
    try:
        # on the CPU: the exported graph keeps the device it was traced on, and runs on the CPU
        opts = list(args.opts) + ["DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu"]
        cfg = tool_config(args.config_file, opts, args.output)
        model = build_analysis_model(cfg)
        inputs = sample_inputs(cfg, args.sample_image)
        path = export_model(cfg, model, inputs, args.format, args.output, args.export_method,
                            args.opset, dump_ir=args.format == "torchscript")
        exported = load_exported(path)
        report = check_against_pytorch(model, exported, inputs)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {type(model).__name__} to {path} (post-processing outside the graph: "
          f"{exported.meta['outside']})")
    print(f"max box difference {report.max_box_diff:.2e} px against PyTorch on the sample "
          f"image: {report}")
    if not report.ok:
        print("error: the exported model's detections differ from PyTorch's", file=sys.stderr)
        return 1
    if args.run_eval:
        metrics = run_eval(cfg, exported, args.output)
        print_csv_format(metrics)
        for task, values in metrics.items():
            print(f"{task} of the exported model on {cfg.DATASETS.TEST[0]}: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return 0
