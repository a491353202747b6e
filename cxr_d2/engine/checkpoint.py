"""A checkpointer whose files are complete or absent, never half written, that resumes from
the newest intact checkpoint and runs no code from a weights file."""

import os
import pickle
import re
import zipfile

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import convert_c2_detectron_names
from torch import nn

from ..errors import CXRError

__all__ = [
    "AtomicCheckpointer",
    "CLASS_COUNT_HEADS",
    "check_fit",
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
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise CXRError(f"MODEL.WEIGHTS {filename}: holds no dict of named weights; {_WHAT_TO_GIVE}")
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


# Parameters whose first dimension follows the class count (a new class list re-initialises
# them): R-CNN box predictor and mask predictor, RetinaNet, FCOS (and BlendMask), SOLOv2, SSD,
# YOLOv3's output convs, BlendMask's semantic head, SipMask's mask scoring.
CLASS_COUNT_HEADS = re.compile(
    r"(^|\.)(box_predictor\.(cls_score|bbox_pred)|mask_head\.predictor|head\.cls_score|"
    r"cls_logits|cate_pred|cls_convs\.\d+|outputs\.\d+\.1|seg_head\.\d+|"
    r"mask_scoring\.predictor)\.(weight|bias)$"
)
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
_BN_TYPES = (nn.modules.batchnorm._NormBase,)


def _module(model, name):
    """The submodule `name` of `model` ("a.b.0"), or None."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _is_bn(module):
    from detectron2.layers import FrozenBatchNorm2d

    return isinstance(module, _BN_TYPES + (FrozenBatchNorm2d,))


def _bn_keys_of_caffe2(state):
    """Detectron2 names (without prefix) that come from a Caffe2 BN (`_bn_s`, `_bn_b`, ...)."""
    renamed, original = convert_c2_detectron_names({k: None for k in state})
    return {new for new in renamed if "_bn_" in original.get(new, "")}


def check_fit(model, incompatible, loaded_keys, checkpoint_keys=None, bn_keys=()):
    """
    Refuse a checkpoint whose norms or shapes do not fit `model`.

    Args:
        incompatible: fvcore's `_IncompatibleKeys` of the load (missing_keys, unexpected_keys,
            incorrect_shapes = [(key, shape in checkpoint, shape in model)]).
        loaded_keys (set[str]): the model's keys the checkpoint gave a value.
        checkpoint_keys (set[str] or None): the checkpoint's keys under the model's names, or
            None where they were matched by Detectron2's heuristics.
        bn_keys (set[str]): names (Detectron2's, no prefix) that come from a BatchNorm of a
            Caffe2 checkpoint, whose statistics are folded into scale and bias.

    Returns:
        list[str]: the class-count heads whose shapes differ (re-initialised, not loaded).

    Raises:
        CXRError: naming the first mismatching keys: a norm of another type (statistics of a
        BatchNorm for a GroupNorm or a conv without norm, or a BatchNorm given none), or a shape
        that differs outside a class-count head.
    """
    problems, heads = [], []
    for key, shape_ckpt, shape_model in incompatible.incorrect_shapes:
        if CLASS_COUNT_HEADS.search(key) and shape_ckpt[1:] == shape_model[1:]:
            heads.append(f"{key} ({shape_ckpt[0]} -> {shape_model[0]} rows)")
        else:
            problems.append(f"{key} is {tuple(shape_ckpt)} in the checkpoint, {tuple(shape_model)} here")
    for key in incompatible.unexpected_keys:
        owner, _, leaf = key.rpartition(".")
        module = _module(model, owner)
        if leaf in _NORM_STATS and module is not None and not _is_bn(module):
            problems.append(f"{key}: BatchNorm statistics, but {owner} is a {type(module).__name__}")
        elif module is None and owner.endswith("norm") and _module(model, owner[:-5].rstrip(".")):
            problems.append(f"{key}: a norm in the checkpoint, none after {owner[:-5].rstrip('.')} here")
    for owner, module in model.named_modules() if checkpoint_keys is not None else ():
        weight = f"{owner}.weight"
        tracks = getattr(module, "running_var", None) is not None
        if _is_bn(module) and tracks and weight in checkpoint_keys and (
            f"{owner}.running_var" not in checkpoint_keys
        ):
            problems.append(f"{owner} is a {type(module).__name__} here but has no statistics in the checkpoint")
    for key in sorted(loaded_keys):
        owner = key.rpartition(".")[0]
        module = _module(model, owner)
        if module is not None and not _is_bn(module) and any(
            key == k or key.endswith("." + k) for k in bn_keys
        ):
            problems.append(f"{key}: a BatchNorm's in the checkpoint, but {owner} is a {type(module).__name__}")
            break
    if problems:
        shown = "; ".join(problems[:3])
        raise CXRError(
            f"MODEL.WEIGHTS does not fit this config ({len(problems)} keys): {shown}"
            f"{'; ...' if len(problems) > 3 else ''}. Use the config the checkpoint was trained "
            "with (norms: MODEL.RESNETS.NORM, MODEL.FPN.NORM, MODEL.ROI_BOX_HEAD.NORM, ...; "
            "configs/Pretrained/ for published weights) or convert it (tools/convert_weights.py)"
        )
    return heads


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

    def _load_model(self, checkpoint):
        """DetectionCheckpointer's load, then :func:`check_fit`: a norm or shape that does not
        fit is an error; class-count heads of another size are re-initialised and logged."""
        caffe2 = checkpoint.get("__author__") == "Caffe2"
        bn_keys = _bn_keys_of_caffe2(checkpoint["model"]) if caffe2 else set()
        checkpoint_keys = None
        if not checkpoint.get("matching_heuristics", False):
            checkpoint_keys = set(checkpoint["model"])
            if checkpoint_keys and all(k.startswith("module.") for k in checkpoint_keys):
                checkpoint_keys = {k[len("module."):] for k in checkpoint_keys}
        num_keys = len(checkpoint["model"])
        model_keys = set(self.model.state_dict())
        incompatible = super()._load_model(checkpoint)
        loaded = model_keys - set(incompatible.missing_keys) - {"pixel_mean", "pixel_std"}
        if num_keys and not loaded and model_keys - {"pixel_mean", "pixel_std"}:
            raise CXRError(
                f"MODEL.WEIGHTS: none of its {num_keys} keys is one of this model's (e.g. "
                f"{sorted(incompatible.unexpected_keys)[:2]}); convert it with "
                "tools/convert_weights.py or use the config it was trained with"
            )
        heads = check_fit(self.model, incompatible, loaded, checkpoint_keys, bn_keys)
        if heads:
            self.logger.info(
                "Re-initialised (the class count differs from the checkpoint's): " + ", ".join(heads)
            )
            incompatible = incompatible._replace(
                incorrect_shapes=[s for s in incompatible.incorrect_shapes if not
                                  CLASS_COUNT_HEADS.search(s[0])]  # fmt: skip
            )
        return incompatible

    def _tag_path(self):
        return os.path.join(self.save_dir, TAG)
