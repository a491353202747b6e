"""projects/SipMask/track.py: a patient folder in study order, tracked as the model tracks it."""
import csv
import json

import cv2
import numpy as np
import pydicom
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from cxr_d2.data.phantom.dicom_writer import write_dicom
from cxr_d2.data.phantom.sequences import draw_sequence
from sipmask.vis.track_tool import _sequence_input, main

from test_sipmask_vis import _cfg, sequences  # noqa: F401 (fixture)
from tests.conftest import one_thread  # noqa: F401

# the films' names are not their order: the dates say c, a, b
DATES = {"c.dcm": "20190301", "a.dcm": "20200101", "b.dcm": "20210101"}


@pytest.fixture
def patient(tmp_path):
    frames, _ = draw_sequence(np.random.default_rng([2, 0]), 128, 3)
    folder = tmp_path / "patient"
    folder.mkdir()
    for frame, (name, date) in zip(frames, DATES.items()):
        write_dicom(str(folder / name), frame)
        ds = pydicom.dcmread(str(folder / name))
        ds.StudyDate = date
        ds.save_as(str(folder / name))
    return folder


def test_folder_tracked_in_date_order_as_the_model_tracks(tmp_path, patient, sequences, one_thread):
    opts = ["MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]
    cfg = _cfg(tmp_path / "run", *opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    weights = str(tmp_path / "model.pth")
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    out = tmp_path / "out"
    config = tmp_path / "vis.yaml"
    config.write_text(cfg.dump())
    assert main(["--config-file", str(config), "--input", str(patient), "--output", str(out),
                 "--score-thresh", "0.0", "--opts", "MODEL.WEIGHTS", weights]) == 0
    ordered = [str(patient / n) for n in DATES]  # by date
    with torch.no_grad():
        expected = model.track_sequence(_sequence_input(cfg, ordered))["frames"]
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows, "the random model tracks something at threshold 0"
    for t, frame in enumerate(expected):
        inst = frame["instances"]
        got = [r for r in rows if int(r["frame"]) == t]
        assert all(r["file"] == ordered[t] for r in got)
        assert [int(r["track_id"]) for r in got] == inst.track_ids.tolist()
        boxes = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in got])
        assert np.allclose(boxes.reshape(-1, 4), inst.pred_boxes.tensor.numpy(), atol=0.01)
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["files"] == ordered
    ids = {int(r["track_id"]) for r in rows}
    assert {t["track_id"] for t in tracks["tracks"]} == ids
    for track in tracks["tracks"]:
        present = [s is not None for s in track["segmentations"]]
        frames_of_id = [any(int(r["track_id"]) == track["track_id"] and int(r["frame"]) == t
                            for r in rows) for t in range(3)]
        assert present == frames_of_id
    strip = cv2.imread(str(out / "strip.png"))
    assert strip.shape[:2] == (512, 3 * 512)


def test_not_a_vis_config_is_one_line(tmp_path, patient, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--config-file", "configs/Phantom/retinanet_R_18_FPN_cpu.yaml", "--input",
              str(patient), "--output", str(tmp_path / "o")])
    assert "tracking needs a SipMaskVIS config" in str(e.value)
