import os

import pytest
import torch
from torch import nn

from cxr_d2.engine import AtomicCheckpointer


def test_crash_while_saving_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    good = torch.load(tmp_path / "model_0000009.pth", weights_only=False)

    real_save = torch.save

    def crash(data, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", crash)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000019", iteration=19)
    monkeypatch.setattr(torch, "save", real_save)

    assert not os.path.exists(tmp_path / "model_0000019.pth")
    assert ckpt.get_checkpoint_file().endswith("model_0000009.pth")
    restored = nn.Linear(3, 2)
    AtomicCheckpointer(restored, str(tmp_path)).resume_or_load("", resume=True)
    assert torch.equal(restored.weight, good["model"]["weight"])
