"""A checkpointer whose files are complete or absent, never half written."""
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer"]


class AtomicCheckpointer(DetectionCheckpointer):
    """
    DetectionCheckpointer that writes `<name>.pth.tmp` and renames it into place, and only then
    updates `last_checkpoint`: a crash while saving leaves the previous checkpoint and the tag
    pointing at it intact.
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        torch.save(data, save_file + ".tmp")
        os.replace(save_file + ".tmp", save_file)
        self.tag_last_checkpoint(basename)
