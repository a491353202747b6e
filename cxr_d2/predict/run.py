"""The prediction loop of `tools/predict.py`: model, loader, selection, writer, summary."""
import logging
import sys
from dataclasses import dataclass

import torch
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model
from tqdm import tqdm

from ..engine.checkpoint import AtomicCheckpointer
from ..errors import ConfigError
from .loader import build_predict_loader
from .overlay import CXRVisualizer, to_rgb
from .select import select_instances
from .writers import PredictionWriter, overlay_names

__all__ = ["Summary", "model_metadata", "load_model", "predict_files"]

logger = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a prediction run did: images read, files skipped, detections kept, files written."""

    read: int = 0
    skipped: int = 0
    ignored: int = 0
    detections: int = 0
    written: tuple = ()

    def line(self):
        ignored = f", {self.ignored} non-image files in folders ignored" if self.ignored else ""
        return (
            f"predicted {self.read} images, skipped {self.skipped} unreadable{ignored}; "
            f"{self.detections} detections"
        )


def model_metadata(cfg):
    """The metadata of the model's classes: DATASETS.TEST's first dataset, else TRAIN's."""
    names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
    return MetadataCatalog.get(names[0]) if names else None


def load_model(cfg):
    """The model of `cfg` in eval mode on MODEL.DEVICE with MODEL.WEIGHTS loaded (checked)."""
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError(
            "MODEL.WEIGHTS is empty: give the trained checkpoint, e.g. "
            "--opts MODEL.WEIGHTS output/model_final.pth"
        )
    model = build_model(cfg)
    AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    return model.eval()


def _dataset_ids(metadata):
    mapping = metadata.get("thing_dataset_id_to_contiguous_id", None) if metadata else None
    return {v: k for k, v in mapping.items()} if mapping else None


def predict_files(cfg, model, paths, output_dir, selection, batch_size=1, num_workers=0,
                  overlays=True, progress=True):
    """
    Predict every file of `paths` and write the results under `output_dir`.

    Args:
        selection (dict): select_instances' keyword arguments (score_thresh, classes, max_dets).
        overlays (bool): draw one PNG per image.

    Returns:
        Summary.
    """
    metadata = model_metadata(cfg)
    class_names = metadata.get("thing_classes", None) if metadata else None
    writer = PredictionWriter(
        output_dir, class_names, _dataset_ids(metadata), overlay_names(paths) if overlays else None
    )
    loader = build_predict_loader(cfg, paths, batch_size, num_workers, keep_original=overlays)
    summary = Summary()
    with tqdm(total=len(paths), unit="image", file=sys.stderr, disable=not progress) as bar:
        for batch in loader:
            _predict_batch(cfg, model, batch, writer, selection, summary, bar)
            bar.update(len(batch))
    summary.written = tuple(writer.close())
    return summary


def _predict_batch(cfg, model, batch, writer, selection, summary, bar):
    for item in (b for b in batch if "error" in b):
        tqdm.write(f"skipped: {item['error']}", file=sys.stderr)
        writer.skip(item)
        summary.skipped += 1
    inputs = [b for b in batch if "error" not in b]
    if not inputs:
        return
    originals = [b.pop("original", None) for b in inputs]
    with torch.no_grad():
        outputs = model(inputs)
    for item, original, output in zip(inputs, originals, outputs):
        instances = select_instances(output["instances"], **selection).to("cpu")
        overlay = None
        if original is not None:
            vis = CXRVisualizer(to_rgb(original, cfg.INPUT.FORMAT), model_metadata(cfg))
            overlay = vis.draw_instance_predictions(instances).get_image()
        writer.add(item, instances, overlay)
        summary.read += 1
        summary.detections += len(instances)
