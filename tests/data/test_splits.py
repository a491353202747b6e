import json
import os
from collections import Counter

import pytest

from cxr_d2.data.splits import select_split, split_by_group, write_manifest
from cxr_d2.errors import ConfigError, DatasetError


def test_split_fractions_and_determinism():
    groups = [f"P{i:04d}" for i in range(1000)]
    a = split_by_group(groups, seed=7)
    assert a == split_by_group(list(reversed(groups)), seed=7)  # order does not matter
    assert Counter(a.values()) == {"train": 800, "val": 100, "test": 100}
    assert a != split_by_group(groups, seed=8)


def test_records_of_one_group_share_a_split():
    records = [("P1", i) for i in range(5)] + [(f"Q{i}", i) for i in range(50)]
    a = split_by_group([g for g, _ in records], seed=0)
    assert len({a[g] for g, _ in records if g == "P1"}) == 1
    assert set(a) == {g for g, _ in records}


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum"):
        split_by_group(["a"], fractions=(0.8, 0.3, 0.1))


def _records():
    return [
        {"file_name": f"{p}_{k}.png", "patient_id": p, "official_split": s}
        for p, s in [(f"P{i:03d}", "test" if i < 20 else "trainval") for i in range(200)]
        for k in range(2)
    ]


def test_select_split_random_and_official():
    records = _records()
    parts = {s: select_split(records, s, "random", 3) for s in ("train", "val", "test")}
    assert [len(v) for v in parts.values()] == [320, 40, 40]
    patients = [{r["patient_id"] for r in v} for v in parts.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    assert parts["train"] != select_split(records, "train", "random", 4)
    assert "official_split" not in parts["train"][0]
    official = {s: select_split(records, s, "official", 0) for s in ("train", "val", "test")}
    assert {r["patient_id"] for r in official["test"]} == {f"P{i:03d}" for i in range(20)}
    assert [len(v) for v in official.values()] == [320, 40, 40]
    with pytest.raises(ConfigError, match="split mode 'nope' is not one of random, official"):
        select_split(records, "train", "nope", 0)
    with pytest.raises(ConfigError, match="split seed 'x' is not an integer"):
        select_split(records, "train", "random", "x")
    no_official = [dict(r, official_split=None) for r in records]
    with pytest.raises(DatasetError, match="no official split.*without '_official'"):
        select_split(no_official, "train", "official", 0, source="uml_peru")


def test_unreadable_manifest_is_rewritten_not_a_traceback(tmp_path):
    path = tmp_path / "split_manifest.json"
    path.write_text('{"cut": [')
    write_manifest(str(path), {"a_test": [{"file_name": "x/1.png"}]}, update=True)
    assert json.loads(path.read_text()) == {"a_test": [os.path.normpath("x/1.png")]}
