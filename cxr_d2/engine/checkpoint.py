"""A checkpointer whose files are complete or absent, never half written, and that resumes from
the newest intact checkpoint."""
import os
import zipfile

import torch
from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["AtomicCheckpointer", "is_intact_checkpoint", "write_atomic"]

TAG = "last_checkpoint"


def _fsync_dir(path):
    """Make a rename in folder `path` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, write):
    """
    Write `path` through `write(file)` into `path.tmp`, fsync it, rename it into place and
    fsync the folder: after a crash at any point `path` is its old content or its new one. A
    failed write removes its `.tmp`, so a full disk leaves nothing behind to block later saves.
    """
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def is_intact_checkpoint(path):
    """Whether `path` is a complete `torch.save` zip archive (every member's CRC checked)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


class AtomicCheckpointer(DetectionCheckpointer):
    """
    DetectionCheckpointer whose checkpoints and `last_checkpoint` tag are each written to a
    `.tmp` file, fsynced and renamed into place, the tag only after its checkpoint. On resume
    it takes the newest intact `.pth` in the folder, so a kill at any point of a save or a file
    cut by a power loss falls back to the last good checkpoint, with a warning naming what it
    skipped.
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
        write_atomic(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        write_atomic(self._tag_path(), lambda f: f.write(last_filename_basename.encode()))

    def has_checkpoint(self):
        return bool(self.get_checkpoint_file())

    def get_checkpoint_file(self):
        """The newest intact `.pth` in the folder (by modification time); "" if there is none.

        The `last_checkpoint` tag is still written for Detectron2's tools, but not trusted: a
        kill between a checkpoint's rename and the tag's leaves the tag one save behind.
        """
        newest_first = sorted(
            self.get_all_checkpoint_files(), key=lambda p: (os.path.getmtime(p), p), reverse=True
        )
        for path in newest_first:
            if is_intact_checkpoint(path):
                return path
            self.logger.warning(f"Checkpoint {path} is incomplete or unreadable; skipping it")
        return ""

    def _tag_path(self):
        return os.path.join(self.save_dir, TAG)
