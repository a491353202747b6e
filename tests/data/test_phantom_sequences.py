"""Phantom sequences: one patient per sequence, persistent identities, cached, loadable."""
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from cxr_d2.data.datasets.youtube_vis import load_youtube_vis_json, register_phantom_sequences
from cxr_d2.data.masks import mask_to_box
from cxr_d2.data.phantom import sequences
from cxr_d2.data.phantom.sequences import draw_sequence, generate_phantom_sequences


def test_lesions_change_exactly_their_masks_and_keep_identity():
    for i in range(3):
        frames, tracks = draw_sequence(np.random.default_rng([5, i]), 128, 5)
        plain, _ = draw_sequence(np.random.default_rng([5, i]), 128, 5, lesions=False)
        assert tracks and len(frames) == 5
        for t in range(5):
            union = np.zeros((128, 128), bool)
            for tr in tracks:
                if tr["masks"][t] is not None:
                    union |= tr["masks"][t]
            changed = frames[t] != plain[t]
            assert not (changed & ~union).any()  # nothing outside the masks changed
            if union.any():  # rounding to uint8 may hide the faintest lesion pixels
                assert changed[union].mean() > 0.5
        for tr in tracks:
            present = [m for m in tr["masks"] if m is not None]
            for a, b in zip(present, present[1:]):  # the same lesion, moved a little
                assert (a & b).sum() / (a | b).sum() > 0.2


def test_motion_and_change_happen():
    """Across 24 sequences: films move, lesions grow or shrink, some appear or resolve."""
    moved = resized = lifecycle = 0
    for i in range(24):
        frames, tracks = draw_sequence(np.random.default_rng([0, i]), 96, 6)
        for tr in tracks:
            present = [t for t, m in enumerate(tr["masks"]) if m is not None]
            lifecycle += present != list(range(6))
            boxes = [mask_to_box(tr["masks"][t]) for t in present]
            moved += len({tuple(b[:2]) for b in boxes}) > 1
            areas = [tr["masks"][t].sum() for t in present]
            resized += max(areas) > 1.15 * min(areas)
    assert moved > 10 and resized > 10 and lifecycle > 3


def test_generated_once_then_reused(tmp_path, monkeypatch):
    json_file, image_root = generate_phantom_sequences(str(tmp_path), 2, length=3, size=96)
    records = load_youtube_vis_json(json_file, image_root)
    assert [r["length"] for r in records] == [3, 3]
    frames, tracks = draw_sequence(np.random.default_rng([0, 1]), 96, 3)
    ids = {a["id"] for f in records[1]["annotations"] for a in f}
    assert len(ids) == len(tracks)
    for t, frame in enumerate(records[1]["annotations"]):
        for inst in frame:
            k = sorted(ids).index(inst["id"])
            assert inst["bbox"] == mask_to_box(tracks[k]["masks"][t])

    def refuse(*a, **k):
        raise AssertionError("redrawn although cached")

    monkeypatch.setattr(sequences, "draw_sequence", refuse)
    assert generate_phantom_sequences(str(tmp_path), 2, length=3, size=96)[0] == json_file
    with pytest.raises(AssertionError, match="redrawn"):
        generate_phantom_sequences(str(tmp_path), 3, length=3, size=96)


def test_registered_tiny_sets(tmp_path):
    register_phantom_sequences(str(tmp_path), prefix="t_")
    train = DatasetCatalog.get("t_cxr_phantom_seq_tiny_train")
    val = DatasetCatalog.get("t_cxr_phantom_seq_tiny_val")
    assert len(train) == 6 and len(val) == 3
    assert all(r["length"] == 4 and r["height"] == 128 for r in train)
    assert train[0]["file_names"][0] != val[0]["file_names"][0]
