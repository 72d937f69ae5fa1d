"""Event times out: RFC 3339 UTC with milliseconds, exact for every year an event can carry."""

from datetime import datetime, timedelta, timezone

import pytest

from clickstream.core.times import BOUND_TEXT, format_ts


@pytest.mark.parametrize("ms", [
    0, 1, 999, 1767225605000, 1709164800000,  # 2024-02-29
    -1, -62135596800000, 253402300799999, 951782400000, 4107542400000,
])
def test_format_ts_matches_datetime(ms):
    assert format_ts(ms) == expected(ms)
    assert format_ts(ms).zfill(24) == format_ts(ms)  # always 4-digit year, 24 characters


def expected(ms: int) -> str:
    """`ms` formatted by datetime: the reference."""
    dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    return f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def test_format_ts_every_millisecond_of_a_second_on_both_sides_of_the_epoch():
    for base in (1767225605000, 0, -1000):
        for millis in range(1000):
            assert format_ts(base + millis) == expected(base + millis)


@pytest.mark.parametrize("ms", [0, 5000, -5000, 1767225600000, 1767225605000, 253402300795000])
def test_bound_text_is_format_ts_remembered(ms):
    assert BOUND_TEXT[ms] == format_ts(ms) == expected(ms)
    assert ms in BOUND_TEXT and BOUND_TEXT[ms] is BOUND_TEXT[ms]
