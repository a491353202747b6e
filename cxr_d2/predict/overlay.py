"""
Detectron2's Visualizer for chest films: one colour per class (the dataset's `thing_colors`
when it has them, Detectron2's colormap otherwise), opaque box edges (a half-transparent edge
is lost on a grayscale film), class names and scores as labels.

The pixels drawn on are the model's own view of the file: :func:`cxr_d2.data.read_image` has
already applied the DICOM rescale and VOI window (or stretched a 16-bit PNG), so what the
overlay shows is what the model saw, at the file's own pixel grid.
"""
import numpy as np
from detectron2.data import detection_utils as d2_utils
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer, _create_text_labels

__all__ = ["CXRVisualizer", "class_color", "to_rgb"]

_PALETTE = colormap(rgb=True, maximum=1)  # (74, 3) float in [0, 1]


def class_color(metadata, class_id):
    """RGB in [0, 1] of contiguous class `class_id`: metadata.thing_colors (0-255) if set."""
    colors = metadata.get("thing_colors", None) if metadata is not None else None
    if colors:
        return tuple(c / 255.0 for c in colors[class_id])
    return tuple(float(c) for c in _PALETTE[class_id % len(_PALETTE)])


def to_rgb(image, fmt):
    """uint8 (H, W, C) in Detectron2's INPUT.FORMAT (or a (C, H, W) tensor) -> uint8 (H, W, 3)."""
    if hasattr(image, "permute"):
        image = image.permute(1, 2, 0).cpu().numpy()
    rgb = d2_utils.convert_image_to_rgb(image, fmt)
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.ascontiguousarray(rgb.astype(np.uint8))


class CXRVisualizer(Visualizer):
    """
    Visualizer drawing every instance in its class colour.

    Args:
        img_rgb (ndarray): uint8 (H, W, 3) RGB.
        metadata (Metadata): with `thing_classes` (and optionally `thing_colors`).
        scale (float): output size relative to the image.
    """

    def __init__(self, img_rgb, metadata=None, scale=1.0):
        super().__init__(img_rgb, metadata, scale=scale, instance_mode=ColorMode.IMAGE)

    def draw_box(self, box_coord, alpha=1.0, edge_color="g", line_style="-"):
        """Visualizer.draw_box, opaque by default."""
        return super().draw_box(box_coord, alpha=alpha, edge_color=edge_color, line_style=line_style)

    def _colors(self, classes):
        return [class_color(self.metadata, int(c)) for c in classes]

    def _names(self):
        return self.metadata.get("thing_classes", None) if self.metadata is not None else None

    def draw_instance_predictions(self, predictions):
        """
        Args:
            predictions (Instances): pred_boxes, scores, pred_classes, optionally pred_masks
                (R, H, W) at this image's size, on any device.

        Returns:
            VisImage.
        """
        predictions = predictions.to("cpu")
        classes = predictions.pred_classes.tolist()
        scores = predictions.scores.tolist()
        masks = None
        if predictions.has("pred_masks"):
            masks = [m for m in np.asarray(predictions.pred_masks, dtype=np.uint8)]
        return self.overlay_instances(
            boxes=predictions.pred_boxes.tensor.numpy() if predictions.has("pred_boxes") else None,
            masks=masks,
            labels=_create_text_labels(classes, scores, self._names()),
            assigned_colors=self._colors(classes),
        )

    def draw_dataset_dict(self, dic):
        """Ground truth of a Detectron2 dataset record ("annotations"), in class colours."""
        annos = [a for a in dic.get("annotations", []) if not a.get("iscrowd", 0)]
        if not annos:
            return self.output
        classes = [a["category_id"] for a in annos]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        masks = [a["segmentation"] for a in annos] if "segmentation" in annos[0] else None
        return self.overlay_instances(
            boxes=np.asarray(boxes, dtype=np.float64),
            masks=masks,
            labels=_create_text_labels(classes, None, self._names()),
            assigned_colors=self._colors(classes),
        )

    def draw_gt_instances(self, instances):
        """Ground truth as the training loader gives it: gt_boxes, gt_classes, gt_masks."""
        instances = instances.to("cpu")
        classes = instances.gt_classes.tolist()
        if not classes:
            return self.output
        masks = None
        if instances.has("gt_masks"):
            gt = instances.gt_masks
            masks = gt.polygons if hasattr(gt, "polygons") else list(np.asarray(gt.tensor, np.uint8))
        return self.overlay_instances(
            boxes=instances.gt_boxes.tensor.numpy(),
            masks=masks,
            labels=_create_text_labels(classes, None, self._names()),
            assigned_colors=self._colors(classes),
        )
