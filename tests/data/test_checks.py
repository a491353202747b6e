"""Box and number checks of the source loaders (`cxr_d2.data.checks`)."""

import pytest

from cxr_d2.data.checks import check_box, parse_number


@pytest.mark.parametrize(
    "box, size, kept, problem",
    [
        ([1, 2, 5, 6], (10, 10), [1, 2, 5, 6], None),
        ([5, 2, 1, 6], (10, 10), None, "x2 < x1"),
        ([1, 2, 1, 6], (10, 10), None, "zero area"),
        ([float("nan"), 2, 5, 6], (10, 10), None, "NaN"),
        ([11, 12, 15, 16], (10, 10), None, "wholly outside"),
        ([-2, 2, 5, 16], (10, 10), [0, 2, 5, 10], "clipped"),
    ],
)
def test_check_box(box, size, kept, problem):
    out, message = check_box(box, *size)
    assert out == kept
    assert (message is None) if problem is None else (problem in message)


def test_parse_number_messages():
    assert parse_number(" 3.5 ", "x") == 3.5
    with pytest.raises(ValueError, match="missing value in column 'w'"):
        parse_number("", "w")
    with pytest.raises(ValueError, match="non-numeric value 'abc' in column 'y'"):
        parse_number("abc", "y")
