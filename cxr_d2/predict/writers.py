"""
What `tools/predict.py` writes under `--output`, each file atomically:

- `predictions.json`: COCO results (`image_id`, `category_id`, `bbox` XYWH, `score`,
  `segmentation` as compressed RLE for mask models), each also with `file_name`, `height`,
  `width` (the file's own pixel grid) and `category_name`.
- `predictions.csv`: one row per detection: file_name, class, category_id, score, x1, y1, x2,
  y2 (pixels of the file's own grid), and for DICOM with a spacing the spacing (mm) and the
  box's width and height in mm.
- `images.json`: every image read (size, detections, overlay, spacing) and every file
  skipped with its reason.
- `overlays/<name>.png`: each image with its detections (class colours, scores).
"""
import csv
import io
import os

from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from PIL import Image

from ..evaluation.output import write_json, write_output, write_text

__all__ = ["CSV_COLUMNS", "PredictionWriter", "overlay_names"]

CSV_COLUMNS = (
    "file_name", "class", "category_id", "score", "x1", "y1", "x2", "y2",
    "pixel_spacing_row_mm", "pixel_spacing_col_mm", "width_mm", "height_mm",
)
OVERLAY_DIR = "overlays"


def overlay_names(paths):
    """
    A distinct PNG name for each path: its path relative to the inputs' common folder, folders
    joined by "__", extension dropped ("a/b/film.dcm" -> "a__b__film.png"); "-<n>" added where
    two would collide.
    """
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(folders) if folders else ""
    names, used = [], set()
    for path in paths:
        rel = os.path.relpath(os.path.abspath(path), common)
        stem = os.path.splitext(rel)[0].replace(os.sep, "__") or "image"
        name, n = f"{stem}.png", 1
        while name in used:
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        names.append(name)
    return names


class PredictionWriter:
    """
    Collects the detections of each image and writes the files above.

    Args:
        output_dir (str): `--output`.
        class_names (list[str] or None): contiguous class id -> name.
        dataset_ids (dict or None): contiguous id -> the dataset's category id (the reverse of
            metadata.thing_dataset_id_to_contiguous_id), as COCOEvaluator writes them.
        overlay_names (list[str] or None): per image_id; None writes no overlay.
    """

    def __init__(self, output_dir, class_names=None, dataset_ids=None, overlay_names=None):
        self.output_dir = output_dir
        self.class_names = class_names
        self.dataset_ids = dataset_ids or {}
        self.overlay_names = overlay_names
        self.results, self.rows, self.images, self.skipped = [], [], [], []
        if overlay_names is not None:
            os.makedirs(os.path.join(output_dir, OVERLAY_DIR), exist_ok=True)

    def _class_name(self, c):
        return self.class_names[c] if self.class_names else str(c)

    def add(self, item, instances, overlay=None):
        """
        Args:
            item (dict): the PredictDataset item (file_name, image_id, height, width,
                pixel_spacing).
            instances (Instances): the selected detections on the CPU, at (height, width).
            overlay (ndarray or None): uint8 (H, W, 3) RGB drawing to save.
        """
        results = instances_to_coco_json(instances, item["image_id"])
        spacing = item.get("pixel_spacing")
        for r, box in zip(results, instances.pred_boxes.tensor.tolist()):
            contiguous = r["category_id"]
            r["category_id"] = self.dataset_ids.get(contiguous, contiguous)
            r.update(category_name=self._class_name(contiguous), file_name=item["file_name"],
                     height=item["height"], width=item["width"])
            self.rows.append(self._row(r, box, spacing))
        self.results += results
        entry = {key: item[key] for key in ("image_id", "file_name", "height", "width")}
        entry.update(detections=len(results), pixel_spacing=spacing)
        if overlay is not None and self.overlay_names is not None:
            entry["overlay"] = os.path.join(OVERLAY_DIR, self.overlay_names[item["image_id"]])
            self._save_png(os.path.join(self.output_dir, entry["overlay"]), overlay)
        self.images.append(entry)

    def _row(self, result, box, spacing):
        x1, y1, x2, y2 = box
        row = {
            "file_name": result["file_name"], "class": result["category_name"],
            "category_id": result["category_id"], "score": round(result["score"], 6),
            "x1": round(x1, 3), "y1": round(y1, 3), "x2": round(x2, 3), "y2": round(y2, 3),
        }
        if spacing:
            row.update(
                pixel_spacing_row_mm=spacing["row_mm"], pixel_spacing_col_mm=spacing["col_mm"],
                width_mm=round((x2 - x1) * spacing["col_mm"], 3),
                height_mm=round((y2 - y1) * spacing["row_mm"], 3),
            )
        return row

    def skip(self, item):
        self.skipped.append({"file_name": item["file_name"], "error": item["error"]})

    @staticmethod
    def _save_png(path, rgb):
        write_output(path, lambda f: Image.fromarray(rgb).save(f, format="PNG"))

    def close(self):
        """Write predictions.json, predictions.csv and images.json; returns their paths."""
        paths = [os.path.join(self.output_dir, name)
                 for name in ("predictions.json", "predictions.csv", "images.json")]
        write_json(paths[0], self.results)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(paths[1], text.getvalue())
        write_json(paths[2], {"images": self.images, "skipped": self.skipped})
        return paths
