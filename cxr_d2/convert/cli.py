"""
`tools/convert_weights.py --from SOURCE IN OUT`: a published checkpoint -> a cxr-d2 checkpoint.

IN is read without running code: `.pkl` through :func:`~cxr_d2.engine.checkpoint.load_pkl_weights`
(dicts of arrays only), Darknet's binary format with NumPy, anything else with
`torch.load(weights_only=True)`. The converter of SOURCE (:data:`cxr_d2.convert.SOURCES`)
accounts for every key; what it mapped, dropped (and why) and could not map is printed, and a key
it could not map is an error unless `--allow-unmapped`. OUT is a Detectron2 checkpoint
`{"model": state_dict, "__author__": ...}`, written atomically, that MODEL.WEIGHTS loads.
"""

import argparse
import os
import pickle
import sys
import zipfile

import torch

from ..engine.checkpoint import load_pkl_weights, weights_file_problem, write_atomic
from ..errors import CXRError
from . import SOURCES, convert_checkpoint

__all__ = ["main", "read_checkpoint", "run"]


def read_checkpoint(source, path):
    """What the converter of `source` takes from file `path` (a CXRError naming it if unreadable)."""
    if not os.path.isfile(path):
        raise CXRError(f"{path}: no such file")
    if source == "darknet":
        from .darknet import read_darknet

        return read_darknet(path)
    problem = weights_file_problem(path)
    if problem:
        raise CXRError(f"{path} {problem}")
    if path.endswith(".pkl"):
        return load_pkl_weights(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise CXRError(f"{path}: refused by torch.load's weights-only mode ({first})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CXRError(f"{path}: damaged checkpoint ({first})") from None


def _require_named_tensors(path, checkpoint):
    """CXRError naming `path` when a dict checkpoint's state dict (itself, or its "model" or
    "state_dict" entry) is not a dict with string keys."""
    if not isinstance(checkpoint, dict):
        return  # each converter names what it expects instead
    state = checkpoint.get("model", checkpoint.get("state_dict", checkpoint))
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CXRError(
            f"{path}: not a checkpoint of named weights (a dict of name -> tensor, alone or "
            "under 'model' or 'state_dict'); check the file and --from"
        )


def _summary(conversion, out):
    print(f"mapped {len(conversion.mapped)} keys", file=out)
    for src, dst in conversion.mapped:
        print(f"  {src} -> {dst}", file=out)
    print(f"dropped {len(conversion.dropped)} keys", file=out)
    for src, why in conversion.dropped:
        print(f"  {src}: {why}", file=out)
    print(f"not mapped {len(conversion.unmapped)} keys", file=out)
    for src in conversion.unmapped:
        print(f"  {src}", file=out)
    for note in conversion.notes:
        print(f"note: {note}", file=out)


def run(source, src_path, out_path, *, allow_unmapped=False, prefix=None, out=None):
    """Convert `src_path` into `out_path`, printing to `out` (stdout); returns the
    :class:`~cxr_d2.convert.Conversion`."""
    out = out or sys.stdout
    if source not in SOURCES:
        raise CXRError(f"--from {source}: use one of {', '.join(SOURCES)}")
    options = {} if prefix is None else {"prefix": prefix}
    checkpoint = read_checkpoint(source, src_path)
    if source != "darknet":
        _require_named_tensors(src_path, checkpoint)
    try:
        conversion = convert_checkpoint(source, checkpoint, **options)
    except CXRError as e:
        raise CXRError(f"{src_path}: {e}") from None
    _summary(conversion, out)
    if conversion.unmapped and not allow_unmapped:
        shown = ", ".join(conversion.unmapped[:5])
        raise CXRError(
            f"{src_path}: {len(conversion.unmapped)} keys of this {source} checkpoint have no "
            f"cxr-d2 counterpart ({shown}{', ...' if len(conversion.unmapped) > 5 else ''}); "
            "check --from, or pass --allow-unmapped to leave them out"
        )
    data = {"model": conversion.model, "__author__": f"cxr-d2 convert_weights --from {source}"}
    folder = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(folder):
        raise CXRError(f"{out_path}: its folder {folder} does not exist")
    try:
        write_atomic(out_path, lambda f: torch.save(data, f))
    except OSError as e:
        raise CXRError(f"{out_path}: cannot be written ({e.strerror})") from None
    print(f"wrote {out_path} ({len(conversion.model)} tensors)", file=out)
    return conversion


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert a published checkpoint into one cxr-d2's MODEL.WEIGHTS loads."
    )
    parser.add_argument("--from", dest="source", required=True, choices=sorted(SOURCES))
    parser.add_argument("input", help="the published file (.pth, .pkl, darknet53.conv.74, ...)")
    parser.add_argument("output", help="the cxr-d2 checkpoint to write (.pth)")
    parser.add_argument(
        "--allow-unmapped", action="store_true", help="leave out keys with no cxr-d2 counterpart"
    )
    parser.add_argument(
        "--prefix",
        help="key prefix of the backbone (default: backbone.bottom_up. for ResNets, backbone. "
        "for VGG and Darknet)",
    )
    args = parser.parse_args(argv)
    try:
        run(args.source, args.input, args.output, allow_unmapped=args.allow_unmapped,
            prefix=args.prefix)  # fmt: skip
    except CXRError as e:
        sys.exit(f"error: {e}")
    return 0
