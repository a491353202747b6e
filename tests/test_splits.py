from collections import Counter

import pytest

from cxr_d2.data.splits import split_by_group


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
