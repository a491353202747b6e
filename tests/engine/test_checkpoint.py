"""AtomicCheckpointer: a kill at any write point, or a cut file, never loses the last good
checkpoint, and --resume continues from the newest intact one."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cxr_d2 import CXRError
from cxr_d2.engine import AtomicCheckpointer

from tests.helpers import cpu_config


class Killed(BaseException):
    """A kill -9 stand-in: nothing after it runs."""


def _model(value):
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def _resumed_weight(folder):
    restored = nn.Linear(3, 2)
    AtomicCheckpointer(restored, str(folder)).resume_or_load("", resume=True)
    return restored.weight[0, 0].item()


# The write points of one save, in order: the checkpoint's bytes, their fsync, its rename, the
# folder's fsync; the tag's fsync (its bytes are written just before), its rename, the folder's.
WRITE_POINTS = [
    ("save", 1), ("fsync", 1), ("replace", 1), ("fsync", 2), ("fsync", 3), ("replace", 2), ("fsync", 4)
]


@pytest.mark.parametrize("point", WRITE_POINTS, ids=[f"{p}{n}" for p, n in WRITE_POINTS])
def test_kill_at_every_write_point_resumes_from_the_newest_intact(point, tmp_path, monkeypatch):
    AtomicCheckpointer(_model(1.0), str(tmp_path)).save("model_0000009", iteration=9)
    calls = {"save": 0, "fsync": 0, "replace": 0}

    def killing(kind, real):
        def wrapper(*args, **kwargs):
            calls[kind] += 1
            if (kind, calls[kind]) == point:
                if kind == "save":  # part of the bytes reach the file, then the kill
                    args[1].write(b"PK\x03\x04 half a checkpoint")
                raise Killed(point)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(torch, "save", killing("save", torch.save))
    monkeypatch.setattr(os, "fsync", killing("fsync", os.fsync))
    monkeypatch.setattr(os, "replace", killing("replace", os.replace))
    with pytest.raises(Killed):
        AtomicCheckpointer(_model(2.0), str(tmp_path)).save("model_0000019", iteration=19)
    monkeypatch.undo()

    renamed = WRITE_POINTS.index(point) > WRITE_POINTS.index(("replace", 1))
    assert _resumed_weight(tmp_path) == (2.0 if renamed else 1.0)
    # A later save succeeds whatever the kill left behind, and is the one resumed.
    AtomicCheckpointer(_model(3.0), str(tmp_path)).save("model_0000029", iteration=29)
    assert _resumed_weight(tmp_path) == 3.0
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000029.pth"


def test_cut_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    """A power loss cut the newest file after its tag was written: resume takes the older."""
    ckpt = AtomicCheckpointer(_model(1.0), str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    AtomicCheckpointer(_model(2.0), str(tmp_path)).save("model_0000019", iteration=19)
    newest = tmp_path / "model_0000019.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert ckpt.get_checkpoint_file() == str(tmp_path / "model_0000009.pth")
    assert _resumed_weight(tmp_path) == 1.0


def test_empty_tag_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    """An empty `last_checkpoint` (as a kill between truncating and writing it left before)."""
    AtomicCheckpointer(_model(1.0), str(tmp_path)).save("model_0000009", iteration=9)
    (tmp_path / "last_checkpoint").write_text("")
    assert _resumed_weight(tmp_path) == 1.0


def test_full_disk_leaves_no_tmp_and_keeps_the_tag(tmp_path, monkeypatch):
    ckpt = AtomicCheckpointer(_model(1.0), str(tmp_path))
    ckpt.save("model_0000009", iteration=9)

    def full(data, f):
        f.write(b"PK")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError):
        ckpt.save("model_0000019", iteration=19)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"


def test_nothing_to_resume_starts_from_scratch(tmp_path):
    ckpt = AtomicCheckpointer(_model(1.0), str(tmp_path))
    assert not ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == ""


def test_stale_tmp_from_a_kill_does_not_block_later_saves(tmp_path):
    (tmp_path / "model_0000019.pth.tmp").write_bytes(b"PK half a checkpoint")
    (tmp_path / "last_checkpoint.tmp").write_bytes(b"model_00")
    AtomicCheckpointer(_model(2.0), str(tmp_path)).save("model_0000019", iteration=19)
    assert _resumed_weight(tmp_path) == 2.0
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000019.pth"


class _RunsCode:
    """A pickle that would create a folder when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pkl_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "weights.pkl"
    evil.write_bytes(pickle.dumps({"model": _RunsCode(str(tmp_path / "pwned"))}, protocol=2))
    with pytest.raises(CXRError, match=r"weights\.pkl: refused to unpickle .*posix\.mkdir"):
        AtomicCheckpointer(nn.Linear(3, 2)).load(str(evil))
    assert not (tmp_path / "pwned").exists()


def test_pkl_that_would_run_code_ends_eval_only_in_one_line(tmp_path):
    evil = tmp_path / "weights.pkl"
    evil.write_bytes(pickle.dumps(_RunsCode(str(tmp_path / "pwned"))))
    cmd = [
        sys.executable, os.path.join("tools", "train_net.py"), "--eval-only",
        "--config-file", cpu_config("retinanet"), "MODEL.WEIGHTS", str(evil),
        "OUTPUT_DIR", str(tmp_path / "out"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: MODEL.WEIGHTS {evil}: refused")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("layout", ["detectron2", "caffe2_blobs", "imagenet"])
def test_pkl_of_arrays_loads_as_detectron2_reads_it(layout, tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    arrays = {"weight": weight, "bias": np.array([0.5, -0.5], dtype=np.float32)}
    data = {
        "detectron2": {"model": arrays, "__author__": "test"},
        "caffe2_blobs": {"blobs": dict(arrays, weight_momentum=np.zeros((2, 3)))},
        "imagenet": arrays,
    }[layout]
    path = tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))  # protocol 2, as Detectron2's files
    model = nn.Linear(3, 2)
    loaded = AtomicCheckpointer(model)._load_file(str(path))
    assert set(loaded["model"]) == {"weight", "bias"}
    AtomicCheckpointer(model).load(str(path))
    assert torch.equal(model.weight, torch.from_numpy(weight))


def test_pth_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "model_final.pth"
    torch.save({"model": _RunsCode(str(tmp_path / "pwned"))}, evil)
    with pytest.raises(CXRError, match=r"model_final\.pth: refused by torch.load's weights-only"):
        AtomicCheckpointer(nn.Linear(3, 2)).load(str(evil))
    assert not (tmp_path / "pwned").exists()
