"""Aggregates, table-driven: initialize / agg / result over known events."""

import pytest

from clickstream.core.aggregations import PageTraffic, UserEngagement
from tests.core.test_windows import E


def _run_aggregation(aggregation, key, events):
    state = aggregation.initialize()
    for e in events:
        aggregation.agg(state, e)
    return aggregation.result(key, 0, 5000, state)


USER_CASES = [
    ("one page view", [E("u", "page_view", "/a", 10, "s1")],
     dict(events=1, page_views=1, clicks=0, unique_pages=1, sessions=1,
          first_event_ts="1970-01-01T00:00:00.010Z", last_event_ts="1970-01-01T00:00:00.010Z")),
    ("mix, out of order, repeated pages and sessions",
     [E("u", "click", "/a", 300, "s1"), E("u", "page_view", "/b", 100, "s2"),
      E("u", "scroll", "/a", 4999, "s1"), E("u", "purchase", "/c", 200),
      E("u", "page_view", "/b", 150, "")],
     dict(events=5, page_views=2, clicks=1, unique_pages=3, sessions=2,
          first_event_ts="1970-01-01T00:00:00.100Z", last_event_ts="1970-01-01T00:00:04.999Z")),
    ("the same page and session again, then a second and a third",
     [E("u", "click", "/a", 1, "s1"), E("u", "click", "/a", 2, "s1"),
      E("u", "click", "/b", 3, "s2"), E("u", "click", "/c", 4, "s3"),
      E("u", "click", "/b", 5, "s1")],
     dict(events=5, page_views=0, clicks=5, unique_pages=3, sessions=3,
          first_event_ts="1970-01-01T00:00:00.001Z", last_event_ts="1970-01-01T00:00:00.005Z")),
    ("a session only after events without one", [E("u", "click", "/a", 1),
                                                  E("u", "click", "/a", 2, "s9")],
     dict(events=2, page_views=0, clicks=2, unique_pages=1, sessions=1,
          first_event_ts="1970-01-01T00:00:00.001Z", last_event_ts="1970-01-01T00:00:00.002Z")),
    ("no sessions at all", [E("u", "add_to_cart", "/x", 0), E("u", "Page_View", "/x", 1)],
     dict(events=2, page_views=0, clicks=0, unique_pages=1, sessions=0,
          first_event_ts="1970-01-01T00:00:00.000Z", last_event_ts="1970-01-01T00:00:00.001Z")),
]


@pytest.mark.parametrize("name, events, expected", USER_CASES, ids=[c[0] for c in USER_CASES])
def test_user_engagement(name, events, expected):
    result = _run_aggregation(UserEngagement(), "u", events)
    assert result == dict(user_id="u", window_start="1970-01-01T00:00:00.000Z",
                          window_end="1970-01-01T00:00:05.000Z", **expected)


PAGE_CASES = [
    ("one view", [E("a", "page_view", "/p", 1)], dict(views=1, events=1, unique_users=1)),
    ("users and kinds", [E("a", "page_view", "/p", 1), E("a", "click", "/p", 2),
                         E("b", "page_view", "/p", 3), E("c", "scroll", "/p", 4)],
     dict(views=2, events=4, unique_users=3)),
]


@pytest.mark.parametrize("name, events, expected", PAGE_CASES, ids=[c[0] for c in PAGE_CASES])
def test_page_traffic(name, events, expected):
    result = _run_aggregation(PageTraffic(), "/p", events)
    assert result == dict(url="/p", window_start="1970-01-01T00:00:00.000Z",
                          window_end="1970-01-01T00:00:05.000Z", **expected)
