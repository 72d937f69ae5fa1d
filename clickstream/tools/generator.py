"""A pure, seeded traffic model of a web shop's clickstream (no Kafka here).

Why a separate pure module: tests, benchmarks and the CLI (`clickstream.generate`) all need
the *same* byte-exact stream for a given seed and start time, and the model must be testable
without a broker.  Everything random comes from one `random.Random(seed)`; the event time is
decided by the model (never by the wall clock), so a run is reproducible from
`(config, start_ms)`.

What the stream looks like (see SPEC.md, "Input"):

* Users: `users` ids like ``u000123``; activity is Zipf-distributed (exponent 0.8) over a
  seed-dependent ranking, so a few users are very busy and most are quiet.
* Sessions: a random session id per visit; a new one after 30 simulated minutes of
  inactivity, or with a small probability per event.  A session starts with a page view.
* Pages: Zipf over a catalogue of home, cart, checkout, search, category and product pages on
  ``https://shop.example``; a few urls are non-ASCII (``/c/café``, ``/p/日本`` ...) and are
  ranked high enough to show up in every run of a few thousand events.
* Event types: page_view > click > scroll > add_to_cart > purchase; click/scroll happen on
  the page the user is on, add_to_cart on a product page, and a purchase only follows an
  add_to_cart of the same user (otherwise the draw becomes an add_to_cart).
* ``ts``: integer epoch milliseconds for ~80 % of events, otherwise an RFC 3339 string with
  milliseconds and ``Z`` or ``+02:00``; both forms encode the same intended instant.
* Time: event ``i`` has base time ``start_ms + i * 1000 / rate`` ms (or ``start_ms + i`` ms,
  i.e. 1000 events per simulated second, when no rate is given); see `base_time_ms`.

Arriving users (``user_lifetime_seconds`` set; the endurance test's traffic): instead of one
Zipf population that is active all the time, the ``users`` users arrive one after the other,
evenly over the stream's event-time span (user ``k`` at ``start + k * span // users``, ids
``u0000001`` ... padded to at least six digits), and each is active for
``user_lifetime_seconds`` from its arrival: its events all lie in that span (up to the usual
disorder), then it never comes back. So the number of distinct users grows linearly with event
time while the number of active users stays flat. A user's first event is a well-formed one
at its arrival, so every one of the ``users`` appears (``users`` must not exceed ``count``);
the other events go to an active user picked uniformly. Late and malformed draws also pick an
active user. (When no user is active, a lifetime shorter than the gap between arrivals, the
next user arrives early; after the last arrival the last user stays.) Everything else (event
types, sessions, pages, time forms, disorder) follows the same rules; the default mode's
stream is unchanged.

Disorder controls (each message gets exactly one kind):

* ``out_of_order``: ts = base time minus 1..`max_disorder_ms` ms.  As base times never
  decrease, such an event is at most `max_disorder_ms` behind the newest event time of its
  user, so with the default 3000 ms it is on time for any allowed lateness >= 3 s.
* ``late``: ts = (newest well-formed event time already generated for that user)
  minus 61..121 s.  The user's newest time is <= the current stream time, so the event is
  also more than 60 s behind the stream.  An event at ts lies in a window ending at most W
  after ts and that window closes once the watermark passes its end plus the lateness L, so
  the event is late for every W <= 30 s and L <= 30 s (W + L <= 60 s < 61 s).  A late draw
  picks a user that already has events; before any user has one it falls back to "valid".
* ``malformed``: the message is replaced by one of a rotating list of broken messages
  (bad JSON, non-object JSON, missing or empty or over-long or wrongly typed fields, naive
  timestamp, invalid UTF-8, empty bytes).  Malformed messages do not advance user state.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Callable, Iterator, NamedTuple

from clickstream.core import codec

KINDS = ("valid", "out_of_order", "late", "malformed")

HOST = "https://shop.example"
DEFAULT_EVENTS_PER_SECOND = 1000  # simulated pace when no rate is given
SESSION_GAP_MS = 30 * 60 * 1000  # inactivity that starts a new session
NEW_SESSION_PROBABILITY = 0.01  # a user may also start a new visit at any event
LATE_MIN_BEHIND_MS = 61_000  # > 60 s: late for any window <= 30 s plus lateness <= 30 s
LATE_SPREAD_MS = 60_000
USER_ZIPF_EXPONENT = 0.8  # heavy users exist, but no single user dominates the traffic
PAGE_ZIPF_EXPONENT = 1.0
PRODUCTS = 2000
MAX_USER_ID_CHARS = 256  # SPEC limit, used to build an over-long malformed user id

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PLUS_TWO = timedelta(hours=2)


class GeneratedMessage(NamedTuple):
    """One Kafka message to produce: key (user id bytes, None only for some malformed),
    the exact value bytes, and which kind of message the model meant it to be."""

    key: bytes | None
    value: bytes
    kind: str


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines the stream; validated so bad CLI input fails early."""

    count: int
    rate: float | None = None
    users: int = 1000
    seed: int = 1
    late_fraction: float = 0.0
    out_of_order_fraction: float = 0.0
    malformed_fraction: float = 0.0
    start_ms: int | None = None
    max_disorder_ms: int = 3000
    user_lifetime_seconds: float | None = None  # None: one population, always active

    def __post_init__(self) -> None:
        def integer(name: str, minimum: int | None) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if minimum is not None and value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")

        integer("count", 0)
        integer("users", 1)
        integer("seed", None)
        integer("max_disorder_ms", 1)
        if self.start_ms is not None:
            integer("start_ms", 0)
        if self.rate is not None:
            if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)):
                raise ValueError(f"rate must be a number, got {self.rate!r}")
            if not (math.isfinite(self.rate) and self.rate > 0):
                raise ValueError(f"rate must be > 0 and finite, got {self.rate}")
        if self.user_lifetime_seconds is not None:
            value = self.user_lifetime_seconds
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"user_lifetime_seconds must be a number, got {value!r}")
            if not (math.isfinite(value) and value * 1000 >= 1):
                raise ValueError(f"user_lifetime_seconds must be at least 0.001 and finite, got {value}")
            if self.users > self.count:
                raise ValueError(
                    f"users must be <= count with user_lifetime_seconds (each user's first event "
                    f"marks its arrival), got {self.users} > {self.count}")
        total = 0.0
        for name in ("late_fraction", "out_of_order_fraction", "malformed_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(
                "late_fraction + out_of_order_fraction + malformed_fraction "
                f"must be <= 1, got {total:g}"
            )


def base_time_ms(config: GeneratorConfig, i: int, start_ms: int | None = None) -> int:
    """The intended event time of message ``i`` before any disorder is applied.

    ``start_ms`` overrides ``config.start_ms`` (needed when the config leaves it to the
    wall clock); one of them must be set.
    """
    start = config.start_ms if start_ms is None else start_ms
    if start is None:
        raise ValueError("start_ms is not set in the config nor given")
    if config.rate is None:
        return start + i * 1000 // DEFAULT_EVENTS_PER_SECOND
    return start + int(i * 1000.0 / config.rate)


def rfc3339_ms(ms: int, plus_two: bool = False) -> str:
    """Epoch ms -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (or the same instant at ``+02:00``)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    if plus_two:
        return f"{dt + _PLUS_TWO:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}+02:00"
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _zipf_cum_weights(n: int, exponent: float) -> list[float]:
    return list(accumulate(1.0 / (rank**exponent) for rank in range(1, n + 1)))


def _page_catalogue(rng: random.Random) -> tuple[list[str], list[str]]:
    """Pages ordered by popularity (seed-dependent, home first, unicode ones ranked high),
    and the product pages (also by popularity) that add_to_cart draws from."""
    categories = ["shoes", "shirts", "kitchen", "garden", "toys", "books", "sale", "new"]
    products = [f"/p/{n}" for n in range(1, PRODUCTS + 1)]
    others = ["/cart", "/search?q=shoes", "/search?q=mug", "/account", "/help"]
    others += [f"/c/{c}" for c in categories] + products
    rng.shuffle(others)
    # Non-ASCII urls at fixed, popular ranks so every run exercises UTF-8 handling.
    unicode_pages = {3: "/c/café", 7: "/p/日本", 15: "/c/électroménager", 30: "/p/crème-brûlée"}
    ordered = ["/"] + others
    for rank, path in sorted(unicode_pages.items()):
        ordered.insert(rank, path)
    ordered.insert(20, "/checkout")
    pages = [HOST + path for path in ordered]
    product_pages = [p for p in pages if p.startswith(HOST + "/p/")]
    return pages, product_pages


_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
_EXTERNAL_REFERRERS = (
    None,  # direct visit
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://newsletter.shop.example/weekly",
    "https://social.example/post/42",
)
# Event mix of a shop; purchase only happens with something in the cart.
_EVENT_TYPES = ("page_view", "click", "scroll", "add_to_cart", "purchase")
_EVENT_CUM = list(accumulate((0.55, 0.25, 0.13, 0.05, 0.02)))

# Per-user state slots (a list per user keeps the hot path cheap); _ARRIVED only with arriving users.
_SESSION, _LAST_BASE, _MAX_TS, _PAGE, _CART, _UA, _ARRIVED = range(7)



def _malformed_variants() -> list[Callable[[dict, bytes, int], tuple[bytes | None, bytes]]]:
    """Broken messages, each violating SPEC's input rules in a different way.

    Each takes a well-formed event dict (safe to mutate), its key and a rotation counter.
    """
    required = ("user_id", "event_type", "url", "ts")

    def with_(field, value):
        def make(event, key, _n):
            event[field] = value
            return key, codec.dumps(event)

        return make

    def truncated_json(event, key, _n):
        raw = codec.dumps(event)
        return key, raw[: len(raw) // 2]  # a strict prefix of an object is never valid JSON

    def missing_field(event, key, n):
        del event[required[n % len(required)]]
        return key, codec.dumps(event)

    def naive_ts(event, key, _n):
        ts = event["ts"]
        text = ts if isinstance(ts, str) else rfc3339_ms(ts)
        event["ts"] = text[:19]  # "2026-01-01T00:00:00": no offset
        return key, codec.dumps(event)

    def bad_utf8_in_string(event, key, _n):
        return key, codec.dumps(event).replace(b'"url":"', b'"url":"\xc3\x28', 1)

    return [
        truncated_json,
        lambda e, k, n: (None, b"[1,2]"),
        lambda e, k, n: (k, b'"str"'),
        lambda e, k, n: (None, b"42"),
        missing_field,
        with_("user_id", ""),
        with_("user_id", "u" * (MAX_USER_ID_CHARS + 44)),
        with_("ts", True),
        with_("ts", 1.5),
        with_("url", 5),
        with_("session_id", 7),
        naive_ts,
        lambda e, k, n: (None, b"\xff\xfe"),
        lambda e, k, n: (None, b""),
        bad_utf8_in_string,
        with_("event_type", ""),
        with_("user_id", 123),
        with_("ts", "yesterday"),
        lambda e, k, n: (k, b"null"),
    ]


def generate(config: GeneratorConfig) -> Iterator[GeneratedMessage]:
    """Yield exactly ``config.count`` messages, reproducibly for ``(seed, start_ms)``.

    When ``config.start_ms`` is None the wall clock at the first ``next()`` is used.
    """
    rng = random.Random(config.seed)
    rand = rng.random
    start_ms = config.start_ms if config.start_ms is not None else int(time.time() * 1000)
    count = config.count
    rate = config.rate

    lifetime_ms = None
    if config.user_lifetime_seconds is None:
        user_ids = [f"u{n:06d}" for n in range(1, config.users + 1)]
        rng.shuffle(user_ids)  # popularity rank -> id, so the busiest user depends on the seed
        user_keys = [u.encode() for u in user_ids]
        user_cum = _zipf_cum_weights(config.users, USER_ZIPF_EXPONENT)
        user_total = user_cum[-1]
    else:  # arriving users: ids by arrival, made when needed (millions of them)
        lifetime_ms = max(1, round(config.user_lifetime_seconds * 1000))
        # ids of the active users only (millions arrive over a run), by arrival index
        id_of = f"u{{:0{max(6, len(str(config.users)))}d}}".format
        user_ids = {0: id_of(1)}
        user_keys = {0: user_ids[0].encode()}
        span_ms = base_time_ms(config, count - 1, start_ms) - start_ms if count else 0
        arrived = 0  # users that have had their first event: user k arrives k-th
        first_active = 0  # users before this one are past their lifetime (state dropped)
    pages, products = _page_catalogue(rng)
    page_cum = _zipf_cum_weights(len(pages), PAGE_ZIPF_EXPONENT)
    page_total = page_cum[-1]
    product_cum = _zipf_cum_weights(len(products), PAGE_ZIPF_EXPONENT)
    product_total = product_cum[-1]
    checkout = HOST + "/checkout"
    n_users = config.users
    n_pages = len(pages)
    n_products = len(products)

    malformed_at = config.malformed_fraction
    late_at = malformed_at + config.late_fraction
    disorder_at = late_at + config.out_of_order_fraction
    max_disorder = config.max_disorder_ms
    variants = _malformed_variants()
    n_variants = len(variants)
    malformed_seen = 0

    state: dict[int, list] = {}
    seen: list[int] = []  # users with at least one well-formed event, for late draws
    id_prefix = f"e{config.seed}-{start_ms}-"
    bisect_right = bisect.bisect_right

    def pick_user() -> int:
        return min(bisect_right(user_cum, rand() * user_total), n_users - 1)

    def pick_page() -> str:
        return pages[min(bisect_right(page_cum, rand() * page_total), n_pages - 1)]

    def pick_product() -> str:
        return products[min(bisect_right(product_cum, rand() * product_total), n_products - 1)]

    def encode_ts(ts: int):
        r = rand()
        if r < 0.8:
            return ts
        return rfc3339_ms(ts, plus_two=r >= 0.9)

    def optional_fields(event: dict, st: list, i: int, referrer) -> dict:
        if rand() < 0.97:
            event["session_id"] = st[_SESSION]
        if rand() < 0.9:
            event["event_id"] = id_prefix + str(i)
        if referrer is not None and rand() < 0.9:
            event["referrer"] = referrer
        if rand() < 0.85:
            event["user_agent"] = st[_UA]
        return event

    for i in range(count):
        base = start_ms + (i * 1000 // DEFAULT_EVENTS_PER_SECOND if rate is None else int(i * 1000.0 / rate))
        r = rand()
        if lifetime_ms is None:
            u = pick_user()
        else:
            # Users past their lifetime leave for good; the latest arrival always stays.
            while first_active < arrived - 1 and state[first_active][_ARRIVED] <= base - lifetime_ms:
                del state[first_active], user_ids[first_active], user_keys[first_active]
                first_active += 1
            someone = arrived > 0  # a late draw needs a user with history
            well_formed = not (r < malformed_at or (r < late_at and someone))
            if well_formed and arrived < n_users and start_ms + arrived * span_ms // n_users <= base:
                u = arrived  # this user's first event: it arrives now
                arrived += 1
                if u:
                    user_ids[u] = id_of(arrived)
                    user_keys[u] = user_ids[u].encode()
            elif arrived:
                u = first_active + int(rand() * (arrived - first_active))
            else:
                u = 0  # a malformed draw before anyone arrived: some user's broken message

        if r < malformed_at:
            # A plausible event for some user, then broken; user state is not touched.
            st = state.get(u) or [f"s{rng.getrandbits(48):012x}", base, base, None, 0, _USER_AGENTS[0]]
            event = optional_fields(
                {"user_id": user_ids[u], "event_type": "page_view", "url": pick_page(), "ts": encode_ts(base)},
                st, i, None,
            )
            key, value = variants[malformed_seen % n_variants](event, user_keys[u], malformed_seen // n_variants)
            malformed_seen += 1
            yield GeneratedMessage(key, value, "malformed")
            continue

        if r < late_at and (seen if lifetime_ms is None else someone):
            # A replayed old event: far behind the newest time this user already has.
            if u not in state:
                u = seen[int(rand() * len(seen))]
            st = state[u]
            ts = st[_MAX_TS] - LATE_MIN_BEHIND_MS - int(rand() * LATE_SPREAD_MS)
            event_type = "page_view" if rand() < 0.7 else "click"
            event = optional_fields(
                {"user_id": user_ids[u], "event_type": event_type, "url": pick_page(), "ts": encode_ts(ts)},
                st, i, None,
            )
            yield GeneratedMessage(user_keys[u], codec.dumps(event), "late")
            continue

        if late_at <= r < disorder_at:
            kind = "out_of_order"
            ts = base - 1 - int(rand() * max_disorder)
        else:
            kind = "valid"  # also a late draw before any user has history
            ts = base

        st = state.get(u)
        new_session = False
        if st is None:
            st = state[u] = [None, base, ts, None, 0, _USER_AGENTS[int(rand() * len(_USER_AGENTS))]]
            if lifetime_ms is None:
                seen.append(u)
            else:
                st.append(base)  # _ARRIVED
            new_session = True
        elif base - st[_LAST_BASE] > SESSION_GAP_MS or rand() < NEW_SESSION_PROBABILITY:
            new_session = True
        if new_session:
            st[_SESSION] = f"s{rng.getrandbits(48):012x}"
            previous = None
            referrer = _EXTERNAL_REFERRERS[int(rand() * len(_EXTERNAL_REFERRERS))]
            event_type = "page_view"
        else:
            previous = st[_PAGE]
            referrer = previous
            event_type = _EVENT_TYPES[min(bisect_right(_EVENT_CUM, rand() * _EVENT_CUM[-1]), 4)]
        st[_LAST_BASE] = base
        if ts > st[_MAX_TS]:
            st[_MAX_TS] = ts

        if event_type == "purchase" and not st[_CART]:
            event_type = "add_to_cart"  # funnel: no purchase without something in the cart
        if event_type == "page_view":
            url = pick_page()
            st[_PAGE] = url
        elif event_type == "add_to_cart":
            url = previous if previous is not None and "/p/" in previous else pick_product()
            st[_CART] += 1
            referrer = None
        elif event_type == "purchase":
            url = checkout
            st[_CART] = 0
            st[_PAGE] = url
        else:  # click / scroll happen on the page the user is looking at
            url = previous if previous is not None else pick_page()
            referrer = None

        event = optional_fields(
            {"user_id": user_ids[u], "event_type": event_type, "url": url, "ts": encode_ts(ts)},
            st, i, referrer,
        )
        yield GeneratedMessage(user_keys[u], codec.dumps(event), kind)
