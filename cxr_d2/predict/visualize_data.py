"""
`tools/visualize_data.py`, as Detectron2's: draw the ground truth of DATASETS.TRAIN, either as
annotated (`--source annotation`, each film at its own pixel grid) or as the training loader
gives it, augmented (`--source dataloader`). One PNG per image under `--output-dir`.
"""
import argparse
import itertools
import os
import sys

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from ..data.dicom import read_image
from ..engine.checkpoint import write_atomic
from ..engine.trainer import Trainer
from ..errors import CXRError, DatasetError
from .config import tool_config
from .overlay import CXRVisualizer, to_rgb
from .writers import overlay_names

__all__ = ["visualize_data_parser", "draw_annotations", "draw_dataloader", "main"]


def visualize_data_parser():
    p = argparse.ArgumentParser(description="Draw the ground truth of DATASETS.TRAIN")
    p.add_argument("--source", choices=["annotation", "dataloader"], required=True,
                   help="the records as annotated, or the training loader's augmented view")
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--output-dir", required=True, metavar="DIR")
    p.add_argument("--num-images", type=int, default=None,
                   help="stop after this many (default: every training image once)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def save_png(path, rgb):
    write_atomic(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))


def draw_annotations(cfg, output_dir, num_images=None):
    """Each record of DATASETS.TRAIN drawn over its film; returns (written, skipped)."""
    records = list(itertools.chain(*(DatasetCatalog.get(n) for n in cfg.DATASETS.TRAIN)))
    records = records[:num_images]
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    names = overlay_names([r["file_name"] for r in records])
    written = skipped = 0
    for record, name in zip(records, names):
        try:
            image = read_image(record["file_name"], "RGB")
        except DatasetError as e:
            print(f"skipped: {e}", file=sys.stderr)
            skipped += 1
            continue
        drawn = CXRVisualizer(image, metadata).draw_dataset_dict(record).get_image()
        save_png(os.path.join(output_dir, name), drawn)
        written += 1
    return written, skipped


def draw_dataloader(cfg, output_dir, num_images=None):
    """The first `num_images` images the training loader yields (default: one epoch's count),
    drawn with their augmented ground truth as `<k>_<file stem>.png`; returns (written, 0)."""
    if num_images is None:
        num_images = sum(len(DatasetCatalog.get(n)) for n in cfg.DATASETS.TRAIN)
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
    written = 0
    for batch in Trainer.build_train_loader(cfg):
        for item in batch:
            if written >= num_images:
                return written, 0
            vis = CXRVisualizer(to_rgb(item["image"], cfg.INPUT.FORMAT), metadata)
            drawn = vis.draw_gt_instances(item["instances"]).get_image()
            stem = os.path.splitext(os.path.basename(item["file_name"]))[0]
            save_png(os.path.join(output_dir, f"{written:05d}_{stem}.png"), drawn)
            written += 1
    return written, 0


def main(argv=None):
    args = visualize_data_parser().parse_args(argv)
    try:
        cfg = tool_config(args.config_file, args.opts, args.output_dir)
        draw = draw_annotations if args.source == "annotation" else draw_dataloader
        written, skipped = draw(cfg, args.output_dir, args.num_images)
    except CXRError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"drew {written} images ({args.source}), skipped {skipped}; written to {args.output_dir}")
    return 0 if written else 1
