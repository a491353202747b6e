"""
`projects/SipMask/track.py`: a trained SipMask-VIS model on one ordered sequence of films (a
fluoroscopy run, or a patient's serial radiographs), tools/predict.py's sibling:

    python projects/SipMask/track.py --config-file projects/SipMask/configs/vis/CFG.yaml \
        --input patient_0042/ --output tracks/ --opts MODEL.WEIGHTS output/model_final.pth

`--input` is the frames in order (files, or a .txt list), or one folder: a patient's studies,
ordered by DICOM StudyDate/StudyTime (by file name when a study has no date; named). Writes
under --output: `tracks.json` (one entry per identity, YouTube-VIS results format with the
class name and the files), `frames.csv` (frame, file, track_id, class, score, x1, y1, x2, y2
in the frame's own pixels) and `strip.png` (every frame's overlay side by side, one colour per
identity, labels "#id class score").
"""
import argparse
import csv
import io
import os
import sys

import cv2
import numpy as np
import torch
from detectron2.utils.colormap import colormap

from cxr_d2.data.datasets.longitudinal import order_studies
from cxr_d2.data.dicom import image_size, read_image
from cxr_d2.errors import CXRError, DatasetError
from cxr_d2.evaluation.output import write_json, write_output, write_text
from cxr_d2.predict.config import tool_config
from cxr_d2.predict.inputs import find_inputs
from cxr_d2.predict.overlay import CXRVisualizer, to_rgb
from cxr_d2.predict.run import load_model, model_metadata

from .evaluator import sequence_tracks
from .mapper import VISSequenceMapper

__all__ = ["track_files", "main"]

_PALETTE = colormap(rgb=True, maximum=1)
_STRIP_HEIGHT = 512


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="the frames in order (files or a .txt list), or one patient folder")
    p.add_argument("--output", required=True, metavar="DIR")
    p.add_argument("--score-thresh", type=float, default=0.3,
                   help="keep tracked detections scoring at least this (0.3)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides")
    return p


def frames_in_order(specs):
    """The frame files and a note on their order (one folder: by study date)."""
    inputs = find_inputs(specs)
    if not inputs.paths:
        raise CXRError(f"--input {' '.join(specs)}: no image file found")
    if len(specs) == 1 and os.path.isdir(specs[0]):
        ordered, undated = order_studies(inputs.paths)
        note = "by file name: no StudyDate for " + ", ".join(undated) if undated else "by date"
        return ordered, note
    return inputs.paths, "as given"


def _sequence_input(cfg, files):
    """SipMaskVIS's sequence input; each frame's output size is its own file's size."""
    sizes = [image_size(f) for f in files]
    sequence = {"video_id": 1, "file_names": files, "height": sizes[0][0],
                "width": sizes[0][1], "annotations": [[] for _ in files]}
    item = VISSequenceMapper(cfg)(sequence)
    for frame, (h, w) in zip(item["frames"], sizes):
        frame["height"], frame["width"] = h, w
    return item


def track_files(cfg, model, files, score_thresh):
    """Per frame, the tracked Instances (CPU) scoring at least `score_thresh`."""
    with torch.no_grad():
        out = model.track_sequence(_sequence_input(cfg, files))
    return [f["instances"][f["instances"].scores >= score_thresh].to("cpu") for f in out["frames"]]


def _overlay(cfg, path, instances, names):
    image = to_rgb(read_image(path, cfg.INPUT.FORMAT), cfg.INPUT.FORMAT)
    vis = CXRVisualizer(image, None)
    ids = instances.track_ids.tolist()
    labels = [f"#{i} {names[c] if names else c} {s:.2f}" for i, c, s in
              zip(ids, instances.pred_classes.tolist(), instances.scores.tolist())]
    drawn = vis.overlay_instances(
        boxes=instances.pred_boxes.tensor.numpy(), labels=labels,
        masks=instances.pred_masks.numpy() if instances.has("pred_masks") else None,
        assigned_colors=[tuple(_PALETTE[i % len(_PALETTE)]) for i in ids],
    ).get_image()
    scale = _STRIP_HEIGHT / drawn.shape[0]
    return cv2.resize(drawn, (max(1, round(drawn.shape[1] * scale)), _STRIP_HEIGHT))


def _png(image_rgb):
    ok, data = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise CXRError("could not encode the overlay strip as PNG")
    return data.tobytes()


def _csv(files, frames, names):
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["frame", "file", "track_id", "class", "score", "x1", "y1", "x2", "y2"])
    for t, (path, inst) in enumerate(zip(files, frames)):
        for tid, c, s, box in zip(inst.track_ids.tolist(), inst.pred_classes.tolist(),
                                  inst.scores.tolist(), inst.pred_boxes.tensor.tolist()):
            writer.writerow([t, path, tid, names[c] if names else c, f"{s:.4f}",
                             *(f"{v:.2f}" for v in box)])
    return text.getvalue()


def write_tracks(cfg, files, frames, output_dir):
    """tracks.json, frames.csv and strip.png under `output_dir`; returns their paths."""
    metadata = model_metadata(cfg)
    names = metadata.get("thing_classes", None) if metadata else None
    tracks = sequence_tracks(1, frames)
    for track in tracks:
        track.pop("video_id")
        track["class"] = names[track["category_id"]] if names else track["category_id"]
    strip = np.hstack([_overlay(cfg, f, inst, names) for f, inst in zip(files, frames)])
    paths = [os.path.join(output_dir, n) for n in ("tracks.json", "frames.csv", "strip.png")]
    write_json(paths[0], {"files": files, "tracks": tracks})
    write_text(paths[1], _csv(files, frames, names))
    png = _png(strip)
    write_output(paths[2], lambda f: f.write(png))
    return paths


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        files, order = frames_in_order(args.input)
        cfg = tool_config(args.config_file, args.opts, args.output)
        if cfg.MODEL.META_ARCHITECTURE != "SipMaskVIS":
            raise CXRError(f"{args.config_file}: MODEL.META_ARCHITECTURE is "
                           f"{cfg.MODEL.META_ARCHITECTURE}; tracking needs a SipMaskVIS config "
                           "(projects/SipMask/configs/vis/)")
        model = load_model(cfg)
        frames = track_files(cfg, model, files, args.score_thresh)
        os.makedirs(args.output, exist_ok=True)
        written = write_tracks(cfg, files, frames, args.output)
    except (CXRError, DatasetError) as e:
        sys.exit(f"error: {e}")
    identities = {i for f in frames for i in f.track_ids.tolist()}
    print(f"tracked {len(files)} frames (ordered {order}): {len(identities)} identities, "
          f"{sum(len(f) for f in frames)} detections")
    for path in written:
        print(f"  {path}")
    return 0
