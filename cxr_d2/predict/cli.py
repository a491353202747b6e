"""
`tools/predict.py`: a trained model on a folder of chest films (PNG, JPEG, 16-bit PNG, DICOM),
flags as Detectron2's demo/demo.py:

    python tools/predict.py --config-file CFG --input films/ list.txt 'more/*.dcm' \
        --output predictions/ --opts MODEL.WEIGHTS output/model_final.pth
    python tools/predict.py ... --tta                                  (test-time augmentation)
    python tools/predict.py ... --ensemble A.yaml@a.pth:2 B.yaml@b.pth (weighted boxes fusion)

Exit status 0 when at least one image was predicted, 1 when none was (or on a config error).
"""
import argparse
import sys

from ..errors import CXRError
from ..modeling.tta import build_tta_model
from .config import tool_config
from .ensemble import build_ensemble
from .inputs import find_inputs
from .run import load_model, model_metadata, predict_files
from .select import parse_classes
from .tta import add_tta_arguments, apply_tta_arguments

__all__ = ["predict_parser", "main"]


def predict_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="image files, folders (recursive), globs, or .txt lists of paths")
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the results")
    p.add_argument("--score-thresh", "--confidence-threshold", type=float, default=0.5,
                   dest="score_thresh", help="keep detections scoring at least this (0.5)")
    p.add_argument("--classes", default="", help="keep these classes: names or ids, a,b")
    p.add_argument("--max-dets", type=int, default=None, help="at most this many per image")
    p.add_argument("--batch-size", type=int, default=1,
                   help="images per forward pass (1: as the evaluator; more pads images to a "
                   "common size, which can shift results near the borders slightly)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers reading files")
    p.add_argument("--no-overlays", action="store_true", help="write no overlay PNGs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tta_arguments(p)
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                   help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS model_final.pth")
    return p


def _check_args(args):
    if args.batch_size < 1 or args.num_workers < 0:
        raise CXRError(f"--batch-size {args.batch_size} --num-workers {args.num_workers}: "
                       "give a batch size >= 1 and workers >= 0")
    if args.max_dets is not None and args.max_dets < 1:
        raise CXRError(f"--max-dets {args.max_dets}: give at least 1 (or leave it out)")


def run(args):
    """Predict as `args` say; returns the Summary."""
    _check_args(args)
    apply_tta_arguments(args)
    inputs = find_inputs(args.input)
    if not inputs.paths:
        raise CXRError(f"--input {' '.join(args.input)}: no image file found")
    cfg = tool_config(args.config_file, args.opts, args.output)
    metadata = model_metadata(cfg)
    classes = parse_classes(args.classes, metadata.get("thing_classes", None) if metadata else None)
    model = build_ensemble(cfg, args.ensemble)[0] if args.ensemble else load_model(cfg)
    if cfg.TEST.AUG.ENABLED and not args.ensemble:  # an ensemble augments each member
        model = build_tta_model(cfg, model)
    selection = {"score_thresh": args.score_thresh, "classes": classes, "max_dets": args.max_dets}
    summary = predict_files(
        cfg, model, inputs.paths, args.output, selection, batch_size=args.batch_size,
        num_workers=args.num_workers, overlays=not args.no_overlays, progress=not args.no_progress,
    )
    summary.ignored = len(inputs.ignored)
    return summary


def main(argv=None):
    """The tool: prints the summary; returns the exit status (0: some image predicted)."""
    args = predict_parser().parse_args(argv)
    try:
        summary = run(args)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{summary.line()} (score >= {args.score_thresh}); written to {args.output}: "
          "predictions.json, predictions.csv, images.json"
          + ("" if args.no_overlays else ", overlays/"))
    return 0 if summary.read else 1
