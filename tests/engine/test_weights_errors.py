"""MODEL.WEIGHTS that is not a checkpoint, or a URL this machine cannot fetch, ends in one line
naming the file (at setup, and again wherever the checkpointer loads). No test touches the
network: downloads are mocked at urllib's urlretrieve, below iopath's real cache logic."""
import argparse
import io
import os
import pickle
import urllib.error
import zipfile

import pytest
import torch
from torch import nn

from cxr_d2.engine import AtomicCheckpointer, setup_cfg
from cxr_d2.engine import setup as engine_setup
from cxr_d2.errors import ConfigError, CXRError

from tests.helpers import REPO_ROOT, cpu_config


def _zip_not_torch():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("weights.txt", "hello")
    return buf.getvalue()


def _torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# name -> (file name, bytes, fragment of the message at setup, fragment when loaded)
BAD_FILES = {
    "random_bytes": ("w.pth", bytes(range(256)) * 4, "is not a checkpoint (it starts with bytes", None),
    "text": ("w.pth", b"<html>404 Not Found</html>", "is not a checkpoint (it starts with text", None),
    "empty": ("w.pth", b"", "is empty", None),
    "zip_not_torch": ("w.pth", _zip_not_torch(), "is a zip archive but not a PyTorch checkpoint", None),
    "cut_zip": ("w.pth", _torch_bytes({"model": {"w": torch.ones(3)}})[:40], "is not a checkpoint", None),
    "pkl_text": ("w.pkl", b"weights: none\n", "is not a checkpoint (it starts with text", None),
    "pkl_empty": ("w.pkl", b"", "is empty", None),
    "pkl_cut": ("w.pkl", pickle.dumps({"w": list(range(100))}, protocol=2)[:20], None, "ends before its pickle does"),
    "pkl_list": ("w.pkl", pickle.dumps([1, 2], protocol=2), None, "a .pkl of weights holds a dict, not list"),
    "pkl_of_strings": ("w.pkl", pickle.dumps({"conv.weight": "abc"}, protocol=2), None, "weight 'conv.weight' is a str, not an array"),
    "pkl_blobs_list": ("w.pkl", pickle.dumps({"blobs": [1, 2]}, protocol=2), None, "holds no dict of named weights"),
    "pkl_int_names": ("w.pkl", pickle.dumps({1: [1.0]}, protocol=2), None, "holds no dict of named weights"),
    "pth_list": ("w.pth", _torch_bytes([1, 2]), None, "holds a list, not a dict of weights"),
    "pth_of_ints": ("w.pth", _torch_bytes({"model": {"conv.weight": 3}}), None, "weight 'conv.weight' is a int"),
}


def _args(tmp_path, weights):
    opts = ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "out")]
    return argparse.Namespace(config_file=os.path.join(REPO_ROOT, cpu_config("retinanet")), opts=opts, resume=False)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_weights_file(case, tmp_path):
    name, data, at_setup, at_load = BAD_FILES[case]
    path = tmp_path / name
    path.write_bytes(data)
    if at_setup:
        with pytest.raises(ConfigError, match=f"MODEL.WEIGHTS {path} ") as e:
            setup_cfg(_args(tmp_path, str(path)))
        assert at_setup in str(e.value)
    with pytest.raises(CXRError) as e:  # whatever loads it: training, --eval-only, tools
        AtomicCheckpointer(nn.Linear(3, 2)).load(str(path))
    assert f"MODEL.WEIGHTS {path}" in str(e.value) and (at_load or at_setup) in str(e.value)
    assert "\n" not in str(e.value)


def test_weights_folder(tmp_path):
    with pytest.raises(ConfigError, match=f"MODEL.WEIGHTS {tmp_path} is a folder"):
        setup_cfg(_args(tmp_path, str(tmp_path)))


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """iopath's download with no network: urlretrieve fails as it does offline; records the
    socket timeout in force."""
    seen = []

    def no_network(url, filename=None, reporthook=None):
        import socket

        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("iopath.common.download.request.urlretrieve", no_network)
    return seen


@pytest.mark.parametrize(
    "url", ["https://example.org/models/R-18.pkl", "detectron2://ImageNetPretrained/MSRA/R-18.pkl"]
)
def test_url_without_network(url, tmp_path, offline):
    with pytest.raises(ConfigError) as e:
        setup_cfg(_args(tmp_path, url))
    message = str(e.value)
    assert message.startswith(f"MODEL.WEIGHTS {url} cannot be downloaded (")
    assert "this machine has no network" in message and "give its local path" in message
    assert offline == [engine_setup.DOWNLOAD_TIMEOUT_S]  # no download may wait forever


def test_url_already_in_the_cache_needs_no_network(tmp_path, offline):
    url = "https://example.org/models/cached.pth"
    cached = tmp_path / "cache" / "models" / "cached.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(_torch_bytes({"model": {"w": torch.ones(1)}}))
    setup_cfg(_args(tmp_path, url))
    assert offline == []
