"""
The inference loader of `tools/predict.py`: each file read by the test mapper (cxr-d2's reader,
then the model's test transform, ResizeShortestEdge from INPUT.MIN/MAX_SIZE_TEST), batched by
a torch DataLoader with workers. An unreadable file becomes a record with an "error" (one line
naming it) instead of ending the run.
"""
import torch
from detectron2.data.build import trivial_batch_collator

from ..data.mapper import CXRDatasetMapper
from ..errors import DatasetError
from .spacing import pixel_spacing

__all__ = ["PredictMapper", "PredictDataset", "build_predict_loader"]


class PredictMapper(CXRDatasetMapper):
    """The test mapper, also keeping the image as read (for the overlay) when `keep_original`."""

    def __init__(self, cfg, keep_original=True):
        super().__init__(cfg, is_train=False)
        self.keep_original = keep_original

    def _read(self, dataset_dict):
        image = super()._read(dataset_dict)
        if self.keep_original:
            dataset_dict["original"] = image  # (H, W, C) uint8 in INPUT.FORMAT
        return image


class PredictDataset(torch.utils.data.Dataset):
    """
    Args:
        paths (list[str]): image files.
        mapper (callable): record {"file_name", "image_id"} -> model input.

    Each item is the model input: "image" (uint8 (C, h, w) at the test size), "height" and
    "width" (the file's own size, to which the model maps its outputs), "file_name",
    "image_id" (the index in `paths`), "pixel_spacing" (dict or None) and, when the mapper keeps
    it, "original"; or {"file_name", "image_id", "error"} for a file that cannot be read.
    """

    def __init__(self, paths, mapper):
        self.paths = list(paths)
        self.mapper = mapper

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            item = self.mapper({"file_name": path, "image_id": index})
        except DatasetError as e:
            return {"file_name": path, "image_id": index, "error": str(e)}
        item["pixel_spacing"] = pixel_spacing(path)
        return item


def build_predict_loader(cfg, paths, batch_size=1, num_workers=0, keep_original=True):
    """A DataLoader over `paths` in order, yielding lists of PredictDataset items."""
    dataset = PredictDataset(paths, PredictMapper(cfg, keep_original=keep_original))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
    )
