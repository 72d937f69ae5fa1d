"""Event times out: RFC 3339 UTC with milliseconds, exact for every year an event can carry."""

from datetime import datetime, timedelta, timezone

import pytest

from clickstream.core.times import format_ts


@pytest.mark.parametrize("ms", [
    0, 1, 999, 1767225605000, 1709164800000,  # 2024-02-29
    -1, -62135596800000, 253402300799999, 951782400000, 4107542400000,
])
def test_format_ts_matches_datetime(ms):
    dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    assert format_ts(ms) == f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    assert format_ts(ms).zfill(24) == format_ts(ms)  # always 4-digit year, 24 characters
