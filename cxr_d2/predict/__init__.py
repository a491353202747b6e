"""
Using a trained model: `tools/predict.py` (files, folders, globs and path lists of PNG, JPEG,
16-bit PNG and DICOM in; COCO results, a CSV and overlays out) and the visualizers of
`tools/visualize_data.py` and `tools/visualize_json_results.py`.
"""
from .inputs import find_inputs
from .loader import PredictDataset, build_predict_loader
from .overlay import CXRVisualizer, class_color
from .run import Summary, load_model, predict_files
from .select import parse_classes, select_instances
from .writers import PredictionWriter, overlay_names

__all__ = [
    "CXRVisualizer",
    "PredictDataset",
    "PredictionWriter",
    "Summary",
    "build_predict_loader",
    "class_color",
    "find_inputs",
    "load_model",
    "overlay_names",
    "parse_classes",
    "predict_files",
    "select_instances",
]
