"""A checkpointer whose files are complete or absent, never half written, that resumes from
the newest intact checkpoint and runs no code from a weights file."""

import os
import pickle
import zipfile

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..errors import CXRError

__all__ = [
    "AtomicCheckpointer",
    "is_intact_checkpoint",
    "load_pkl_weights",
    "weights_file_problem",
    "write_atomic",
]

TAG = "last_checkpoint"
# torch.save's legacy (non-zip) format opens with the pickle of this magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_WHAT_TO_GIVE = "give a Detectron2 .pth checkpoint or a .pkl of arrays"

# What a `.pkl` of weights may name (Detectron2's and Caffe2's model-zoo files are dicts of
# NumPy arrays): NumPy's array reconstruction, and the latin1 bytes codec of protocol 2.
_PKL_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


def weights_file_problem(filename):
    """
    Why `filename` cannot be a weights file, read from its first bytes only (a sentence), or
    None where it may be one: a torch.save zip holding a `data.pkl`, torch's legacy format, or
    (`.pkl`) a pickle.
    """
    try:
        with open(filename, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not head:
        return "is empty"
    if zipfile.is_zipfile(filename):
        return _zip_problem(filename)
    if filename.endswith(".pkl"):
        return None if head[:1] == b"\x80" else _not_a_checkpoint(head)
    return None if head.startswith(_LEGACY_TORCH_MAGIC) else _not_a_checkpoint(head)


def _zip_problem(filename):
    try:
        with zipfile.ZipFile(filename) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        return f"is a damaged zip archive ({e})"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return None
    return "is a zip archive but not a PyTorch checkpoint (it holds no data.pkl)"


def _not_a_checkpoint(head):
    try:
        text = head.decode("utf-8")
        kind = "text" if all(c.isprintable() or c.isspace() for c in text) else "bytes"
    except UnicodeDecodeError:
        kind = "bytes"
    return f"is not a checkpoint (it starts with {kind} {head[:16]!r})"


def _check_loaded(filename, loaded):
    """Refuse what Detectron2's checkpointer would meet as a traceback: weights that are not a
    dict of arrays/tensors. Returns `loaded`."""
    model = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(model, dict):
        kind = type(model if isinstance(loaded, dict) else loaded).__name__
        raise CXRError(f"MODEL.WEIGHTS {filename}: holds a {kind}, not a dict of weights; {_WHAT_TO_GIVE}")
    for name, value in model.items():
        if not isinstance(value, (np.ndarray, torch.Tensor)):
            raise CXRError(
                f"MODEL.WEIGHTS {filename}: weight {name!r} is a {type(value).__name__}, not "
                f"an array; {_WHAT_TO_GIVE}"
            )
    return loaded


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a weights file never needs")


def load_pkl_weights(filename):
    """
    Read a Detectron2 / Caffe2 model-zoo `.pkl` as Detectron2's checkpointer does, with an
    unpickler that admits only dicts, lists, numbers, strings and NumPy arrays: a `.pkl` that
    would run code is refused with a CXRError naming the file.

    Returns:
        dict: `{"model": {name: array}, "__author__": ..., ...}` as DetectionCheckpointer.
    """
    try:
        with open(filename, "rb") as f:
            data = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except EOFError:
        raise CXRError(f"MODEL.WEIGHTS {filename}: ends before its pickle does (cut short?)") from None
    except (pickle.UnpicklingError, ValueError, TypeError) as e:
        if "truncated" in str(e):
            raise CXRError(
                f"MODEL.WEIGHTS {filename}: ends before its pickle does (cut short?)"
            ) from None
        raise CXRError(
            f"MODEL.WEIGHTS {filename}: refused to unpickle ({e}); give a Detectron2 .pth "
            "checkpoint or a .pkl of arrays"
        ) from None
    if not isinstance(data, dict):
        raise CXRError(
            f"MODEL.WEIGHTS {filename}: a .pkl of weights holds a dict, not "
            f"{type(data).__name__}"
        )
    if "model" in data and "__author__" in data:
        return data
    data = data.get("blobs", data)  # detection models have "blobs", ImageNet models do not
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


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

    def _load_file(self, filename):
        problem = weights_file_problem(filename)
        if problem:
            raise CXRError(f"MODEL.WEIGHTS {filename} {problem}; {_WHAT_TO_GIVE}")
        if filename.endswith(".pkl"):
            return _check_loaded(filename, load_pkl_weights(filename))
        try:
            loaded = super()._load_file(filename)  # .pth/.pyth: torch.load, weights only
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0]
            raise CXRError(
                f"MODEL.WEIGHTS {filename}: refused by torch.load's weights-only mode ({first})"
            ) from None
        except (RuntimeError, EOFError, OSError, AssertionError, zipfile.BadZipFile) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CXRError(
                f"MODEL.WEIGHTS {filename}: damaged checkpoint ({first}); {_WHAT_TO_GIVE}"
            ) from None
        return _check_loaded(filename, loaded)

    def _tag_path(self):
        return os.path.join(self.save_dir, TAG)
