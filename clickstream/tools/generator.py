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

Visits (``visits=True``; opt-in, the default stream is unchanged): people, not a Zipf draw per
message. Each event belongs to a user's visit, and the stream is the merge of all users'
timelines in time order, each event at the time its visit planned; there is no fixed grid
(`base_time_ms` is for the other modes). ``users`` is the population:

* A visit is a bounce (one page view) with probability ``bounce_share``; otherwise 2 or more
  events (2 + geometric, about 8 on average) with think times between them: lognormal,
  median ``think_seconds``, at least 1 s and at most ten minutes (and half the planning gap),
  so no person makes more than one event per second. A share ``purchase_share`` of all
  visits end with a purchase after an add_to_cart of the same visit; other visits never buy.
* After a visit a person comes back (probability `VISIT_RETURN_SHARE`) after a pause around
  ``visit_gap_seconds`` (lognormal, median the gap: about half shorter, so those visits merge
  into one session, half longer), or leaves for at least the gap.
* Visits start as a Poisson process: each start goes to the person whose return is due first
  (later than planned by the wait for a start: seconds), else to a person drawn uniformly
  from those not in a visit, not coming back and not just gone. So pauses after leaving are
  hours or days in a large population, and the rate is steady from the first message.
* Bots: ``round(bot_share * users)`` users (fewer if they would make more than
  `BOT_MAX_TRAFFIC_SHARE` of the events) click every 1-5 s in runs of 12-48 hours, so their
  sessions run into any session maximum; their user agent says so (`visit_bot_ids`).
* Rate (`visit_plan`): with ``rate``, visits start often enough for ``rate`` messages per
  second of event time on average (people in a visit at once: about 27 s times their events
  per second); the population must be large enough (at most half of the people busy: in a
  visit, about to come back or just gone), else the config is rejected naming the users
  needed. Without ``rate``, the pace is the one at which a quarter of them are busy (0.69
  messages/s for 1000 users), and a wall-clock start is placed so that the stream ends about
  now (sent unpaced, a stream starting now would run hours into the future). The simulation
  starts `VISIT_WARMUP_GAPS` planning gaps (at least an hour) before ``start_ms`` and emits
  nothing of that, so visits are under way and people are coming back when the stream starts.
* Late and malformed draws add a message (for the user of the next planned event) without
  consuming a planned event; out_of_order shifts that event back by 1..max_disorder_ms. The
  guarantees below hold as stated, with "base time" the planned time of the event.
  ``session_id`` names the visit. `clickstream.tools.visits` derives, from this model alone,
  the sessions a correct service must emit.

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
import heapq
import math
import random
import time
from collections import deque
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

# Visits mode (see the module docstring and `visit_plan`).
VISIT_THINK_SIGMA = 1.0  # lognormal think time between a visit's pages: median think_seconds
VISIT_THINK_MIN_MS = 1000  # no person makes more than one event per second
VISIT_THINK_MAX_MS = 600_000  # and at most half the planning gap
VISIT_EXTRA_EVENTS_MEAN = 6.5  # a non-bounce visit has 2 + floor(Exp(this)) events ...
VISIT_MAX_EVENTS = 100  # ... at most this many
VISIT_RETURN_SHARE = 0.45  # after a visit: comes back after a pause around the gap ...
VISIT_RETURN_SIGMA = 0.7  # ... lognormal, median the planning gap: about half shorter
VISIT_RETURN_MIN_MS = 60_000
VISIT_RETURN_MAX_GAPS = 4
VISIT_AWAY_MIN_GAPS = 1  # ... or leaves for at least the gap, then may be drawn again
VISIT_WARMUP_GAPS = 2  # simulated before start_ms (at least an hour), unseen, so the stream
VISIT_WARMUP_MIN_MS = 3_600_000  # starts in steady state
VISIT_WARMUP_EXACT_MS = 1_800_000  # visits starting earlier in the warm-up: only their end is drawn
VISIT_BUSY_SHARE_MAX = 0.5  # a rate needing more of the people busy at once is refused
VISIT_BUSY_SHARE_NO_RATE = 0.25  # without a rate: the pace at which this share is busy
VISIT_EVENT_CUM = list(accumulate((0.55, 0.25, 0.13, 0.05)))  # page_view click scroll add_to_cart
BOT_CLICK_MS = (1000, 5000)  # a bot clicks every 1-5 s (uniform) ...
BOT_RUN_MS = (12 * 3_600_000, 48 * 3_600_000)  # ... in runs of 12-48 hours ...
BOT_PAUSE_MS = (600_000, 3_600_000)  # ... with 10-60 minutes between runs
BOT_MAX_TRAFFIC_SHARE = 0.2  # fewer bots than bot_share asks when they would make more events
BOT_USER_AGENT = "Mozilla/5.0 (compatible; ShopCrawler/2.1; +https://crawler.example/bot)"

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
    visits: bool = False  # people with visits, pauses, bots (module docstring); opt-in
    visit_gap_seconds: float = 1800.0  # the gap the visits' pauses are planned around
    bounce_share: float = 0.3  # of visits: a single page view
    purchase_share: float = 0.05  # of visits: ends with a purchase
    bot_share: float = 0.002  # of users: bots
    think_seconds: float = 20.0  # median think time between a visit's pages

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
        def number(name: str, low: float, high: float | None = None, low_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < low or (low_open and value == low) or (
                    high is not None and value > high):
                bound = f"> {low:g}" if low_open else f">= {low:g}"
                raise ValueError(f"{name} must be {bound}" + (f" and <= {high:g}" if high is not None else "")
                                 + f", got {value}")

        if not isinstance(self.visits, bool):
            raise ValueError(f"visits must be true or false, got {self.visits!r}")
        number("visit_gap_seconds", 2.0)
        number("bounce_share", 0.0, 1.0)
        number("purchase_share", 0.0, 1.0)
        if self.purchase_share > 1.0 - self.bounce_share + 1e-9:
            raise ValueError(f"purchase_share must be <= 1 - bounce_share (a bounce buys nothing), "
                             f"got {self.purchase_share:g} with bounce_share {self.bounce_share:g}")
        number("bot_share", 0.0, 0.5)
        number("think_seconds", 0.0, None, low_open=True)
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
        if self.visits:
            if self.user_lifetime_seconds is not None:
                raise ValueError("visits and user_lifetime_seconds are two different traffic models: pick one")
            if self.users >= 1 << 32:
                raise ValueError(f"users must be < {1 << 32} with visits, got {self.users}")
            if self.late_fraction + self.malformed_fraction > 1.0 - 1e-6:
                raise ValueError("late_fraction + malformed_fraction must be < 1 with visits (they add "
                                 "messages to the visits' events, which must go on)")
            visit_plan(self)  # raises when the population cannot make the rate


def base_time_ms(config: GeneratorConfig, i: int, start_ms: int | None = None) -> int:
    """The intended event time of message ``i`` before any disorder is applied.

    ``start_ms`` overrides ``config.start_ms`` (needed when the config leaves it to the
    wall clock); one of them must be set.
    """
    start = config.start_ms if start_ms is None else start_ms
    if start is None:
        raise ValueError("start_ms is not set in the config nor given")
    if config.visits:
        raise ValueError("with visits an event's time comes from its visit, not from a grid")
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
_VISIT = _ARRIVED  # the visits mode's slot: the visit the user's session id belongs to



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


class _Draws:
    """What both modes draw alike, from the stream's one random generator: a page, a product,
    the form of a timestamp, the optional fields. Made where each mode always made its page
    catalogue, so every draw comes in the same order as before (the streams are byte-exact)."""

    def __init__(self, rng: random.Random, seed: int, start_ms: int):
        self.rand = rng.random
        self.pages, self.products = _page_catalogue(rng)
        self.page_cum = _zipf_cum_weights(len(self.pages), PAGE_ZIPF_EXPONENT)
        self.product_cum = _zipf_cum_weights(len(self.products), PAGE_ZIPF_EXPONENT)
        self.id_prefix = f"e{seed}-{start_ms}-"

    def page(self) -> str:
        return _zipf_pick(self.pages, self.page_cum, self.rand())

    def product(self) -> str:
        return _zipf_pick(self.products, self.product_cum, self.rand())

    def timestamp(self, ts: int):
        r = self.rand()
        if r < 0.8:
            return ts
        return rfc3339_ms(ts, plus_two=r >= 0.9)

    def optional_fields(self, event: dict, st: list, i: int, referrer) -> dict:
        rand = self.rand
        if rand() < 0.97:
            event["session_id"] = st[_SESSION]
        if rand() < 0.9:
            event["event_id"] = self.id_prefix + str(i)
        if referrer is not None and rand() < 0.9:
            event["referrer"] = referrer
        if rand() < 0.85:
            event["user_agent"] = st[_UA]
        return event


def _zipf_pick(items: list, cum: list, r: float):
    return items[min(bisect.bisect_right(cum, r * cum[-1]), len(items) - 1)]


def generate(config: GeneratorConfig) -> Iterator[GeneratedMessage]:
    """Yield exactly ``config.count`` messages, reproducibly for ``(seed, start_ms)``.

    When ``config.start_ms`` is None the wall clock at the first ``next()`` is used (with
    visits and no rate: so that the stream ends about then).
    """
    if config.visits:
        yield from _generate_visits(config)
        return
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
    draws = _Draws(rng, config.seed, start_ms)
    pick_page, pick_product = draws.page, draws.product
    encode_ts, optional_fields = draws.timestamp, draws.optional_fields
    checkout = HOST + "/checkout"
    n_users = config.users

    malformed_at = config.malformed_fraction
    late_at = malformed_at + config.late_fraction
    disorder_at = late_at + config.out_of_order_fraction
    max_disorder = config.max_disorder_ms
    variants = _malformed_variants()
    n_variants = len(variants)
    malformed_seen = 0

    state: dict[int, list] = {}
    seen: list[int] = []  # users with at least one well-formed event, for late draws
    bisect_right = bisect.bisect_right

    def pick_user() -> int:
        return min(bisect_right(user_cum, rand() * user_total), n_users - 1)


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


# ---------------------------------------------------------------------------------------------
# Visits mode


class VisitPlan(NamedTuple):
    """The visits mode's calibration: pure from the config (means, per second of event time)."""

    rate: float  # messages per second (config.rate, or the pace the population sustains)
    event_rate: float  # the visits' events (the rest of the messages are late or malformed extras)
    persons: int  # users that are people
    bots: int  # users that are bots
    person_event_rate: float
    bot_event_rate: float
    visit_rate: float  # person visits starting per second
    events_per_visit: float
    visit_seconds: float  # first to last event
    think_seconds: float  # mean think time
    return_pause_seconds: float  # mean pause before coming back
    concurrent_visits: float  # people in a visit at any moment
    busy_persons: float  # people in a visit, or paused before coming back, or just gone


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _clipped_lognormal_mean(median: float, sigma: float, low: float, high: float) -> float:
    """E[min(max(X, low), high)] for X lognormal with that median and sigma."""
    mu, a, b = math.log(median), math.log(low), math.log(high)
    if a >= b:
        return low
    inside = math.exp(mu + sigma * sigma / 2) * (
        _phi((b - mu - sigma * sigma) / sigma) - _phi((a - mu - sigma * sigma) / sigma))
    return low * _phi((a - mu) / sigma) + high * (1.0 - _phi((b - mu) / sigma)) + inside


def _clipped_lognormal_sd(median: float, sigma: float, low: float, high: float) -> float:
    """The standard deviation of min(max(X, low), high), X lognormal."""
    mu, a, b = math.log(median), math.log(low), math.log(high)
    if a >= b:
        return 0.0
    inside = math.exp(2 * mu + 2 * sigma * sigma) * (
        _phi((b - mu - 2 * sigma * sigma) / sigma) - _phi((a - mu - 2 * sigma * sigma) / sigma))
    second = low * low * _phi((a - mu) / sigma) + high * high * (1.0 - _phi((b - mu) / sigma)) + inside
    mean = _clipped_lognormal_mean(median, sigma, low, high)
    return math.sqrt(max(0.0, second - mean * mean))


def _think_bounds_ms(config: GeneratorConfig) -> tuple[int, int]:
    return VISIT_THINK_MIN_MS, max(VISIT_THINK_MIN_MS, min(VISIT_THINK_MAX_MS, int(config.visit_gap_seconds * 500)))


def _return_bounds_ms(config: GeneratorConfig) -> tuple[int, int]:
    gap_ms = config.visit_gap_seconds * 1000
    return VISIT_RETURN_MIN_MS, max(VISIT_RETURN_MIN_MS, int(VISIT_RETURN_MAX_GAPS * gap_ms))


def visit_plan(config: GeneratorConfig) -> VisitPlan:
    """How many visits start per second, how many people are busy, how many bots: so that the
    stream makes ``config.rate`` messages per second of event time.

    Raises ValueError (naming users and rate) when the people are too few for the rate.
    """
    bounce = config.bounce_share
    buy_if_stays = config.purchase_share / (1.0 - bounce) if bounce < 1.0 else 0.0
    # events of a visit that is not a bounce: 2 + floor(Exp(m)) (geometric), capped, >= 3 if it buys
    q = math.exp(-1.0 / VISIT_EXTRA_EVENTS_MEAN)
    mean_n = sum((2 + k) * (1 - q) * q**k for k in range(VISIT_MAX_EVENTS - 2)) + VISIT_MAX_EVENTS * q ** (
        VISIT_MAX_EVENTS - 2)
    mean_n += (1 - q) * buy_if_stays  # a buying visit of 2 events gets a third
    low, high = _think_bounds_ms(config)
    think_ms = _clipped_lognormal_mean(config.think_seconds * 1000, VISIT_THINK_SIGMA, low, high)
    r_low, r_high = _return_bounds_ms(config)
    gap_ms = config.visit_gap_seconds * 1000
    return_ms = _clipped_lognormal_mean(gap_ms, VISIT_RETURN_SIGMA, r_low, r_high)
    events_per_visit = bounce + (1 - bounce) * mean_n
    visit_ms = (1 - bounce) * (mean_n - 1) * think_ms
    busy_ms = visit_ms + VISIT_RETURN_SHARE * return_ms + (1 - VISIT_RETURN_SHARE) * VISIT_AWAY_MIN_GAPS * gap_ms
    bot_click_ms = sum(BOT_CLICK_MS) / 2
    bot_duty = sum(BOT_RUN_MS) / (sum(BOT_RUN_MS) + sum(BOT_PAUSE_MS))
    per_bot = bot_duty * 1000 / bot_click_ms  # events per second of one bot
    wanted_bots = round(config.bot_share * config.users)
    on_time = 1.0 - config.late_fraction - config.malformed_fraction  # share of messages that are events
    if config.rate is None:  # the pace at which a quarter of the people are busy
        def person_rate(persons: int) -> float:
            return VISIT_BUSY_SHARE_NO_RATE * persons * events_per_visit * 1000 / busy_ms

        bots = min(wanted_bots, int(BOT_MAX_TRAFFIC_SHARE / (1 - BOT_MAX_TRAFFIC_SHARE)
                                    * person_rate(config.users - wanted_bots) / per_bot))
        persons = config.users - bots
        person_events = person_rate(persons)
        event_rate = person_events + bots * per_bot
        rate = event_rate / on_time
    else:
        rate = config.rate
        event_rate = rate * on_time
        bots = min(wanted_bots, int(BOT_MAX_TRAFFIC_SHARE * event_rate / per_bot))
        persons = config.users - bots
        person_events = event_rate - bots * per_bot
    visit_rate = person_events / events_per_visit
    busy = visit_rate * busy_ms / 1000
    if persons < 1 or busy > VISIT_BUSY_SHARE_MAX * persons:
        need = math.ceil(busy / VISIT_BUSY_SHARE_MAX) + bots
        raise ValueError(
            f"users must be at least {need} for rate {rate:g} with visits (a visit and the pause "
            f"after it keep a person busy about {busy_ms / 1000:.0f} s), got {config.users}")
    return VisitPlan(
        rate=rate, event_rate=event_rate, persons=persons, bots=bots,
        person_event_rate=person_events, bot_event_rate=bots * per_bot,
        visit_rate=visit_rate,
        events_per_visit=events_per_visit, visit_seconds=visit_ms / 1000, think_seconds=think_ms / 1000,
        return_pause_seconds=return_ms / 1000, concurrent_visits=visit_rate * visit_ms / 1000,
        busy_persons=busy,
    )


def _user_id_format(config: GeneratorConfig) -> Callable[[int], str]:
    """User index (0-based) -> id ``u000001`` ..., at least six digits."""
    return f"u{{:0{max(6, len(str(config.users)))}d}}".format


def _bot_indices(config: GeneratorConfig, plan: VisitPlan) -> list[int]:
    return random.Random(f"bots:{config.seed}").sample(range(config.users), plan.bots)


def visit_bot_ids(config: GeneratorConfig) -> frozenset[str]:
    """The user ids the visits mode makes bots (empty for the other modes)."""
    if not config.visits:
        return frozenset()
    id_of = _user_id_format(config)
    return frozenset(id_of(b + 1) for b in _bot_indices(config, visit_plan(config)))


class _PlannedEvent(NamedTuple):
    time_ms: int
    user: int  # index
    event_type: str
    visit: int  # a number per visit (or bot run): a new one starts a session id


def _visit_timeline(config: GeneratorConfig, plan: VisitPlan, start_ms: int) -> Iterator[_PlannedEvent]:
    """Every user's planned events merged in time order (ties in a fixed order), from ``start_ms`` on
    (endless). Its own random stream, so the timeline does not depend on how messages look.
    """
    rng = random.Random(f"visits:{config.seed}")
    rand = rng.random
    gauss = rng.gauss
    exp = math.exp
    # The next thing each busy user does, as one int: time << 32 | user (one entry per user).
    heap: list[int] = []
    returns: list[int] = []  # people coming back, by the time they planned to: time << 32 | user
    push, pop = heapq.heappush, heapq.heappop
    users = config.users
    gap_ms = int(config.visit_gap_seconds * 1000)
    think_mu, (think_low, think_high) = math.log(config.think_seconds * 1000), _think_bounds_ms(config)
    return_mu, (return_low, return_high) = math.log(gap_ms), _return_bounds_ms(config)
    away_ms = VISIT_AWAY_MIN_GAPS * gap_ms
    bounce = config.bounce_share
    buy_if_stays = config.purchase_share / (1.0 - bounce) if bounce < 1.0 else 0.0
    extra_rate = 1.0 / VISIT_EXTRA_EVENTS_MEAN
    mix_total = VISIT_EVENT_CUM[-1]
    bisect_right = bisect.bisect_right
    bisect_left = bisect.bisect_left
    # person -> [times, types, index of the next event, visit number], or None: coming back.
    # People who left wait in `away` (in time order: the stay is fixed) until they may be
    # drawn again.
    busy: dict[int, list | None] = {}
    away: deque[tuple[int, int]] = deque()
    bots: dict[int, list] = {}  # bot -> [run end, visit number, next event starts a run]
    visit_no = 0
    sim_ms = start_ms - max(VISIT_WARMUP_GAPS * gap_ms, VISIT_WARMUP_MIN_MS)
    for b in _bot_indices(config, plan):  # running when the stream starts, 12-48 h to go
        visit_no += 1
        bots[b] = [start_ms + rng.randint(*BOT_RUN_MS), visit_no, True]
        push(heap, (start_ms + int(rand() * BOT_CLICK_MS[1])) << 32 | b)
    # Visits start as a Poisson process of the planned rate, so the stream's rate is steady
    # from the start: each start goes to the person whose return is due first, else (nobody's
    # is due) to someone drawn from the people who are not busy.
    between_ms = 1000 / plan.visit_rate if plan.visit_rate > 0 else math.inf
    next_start = sim_ms + rng.expovariate(1.0) * between_ms

    think_mean = _clipped_lognormal_mean(config.think_seconds * 1000, VISIT_THINK_SIGMA, think_low, think_high)
    think_sd = _clipped_lognormal_sd(config.think_seconds * 1000, VISIT_THINK_SIGMA, think_low, think_high)
    rough_before = start_ms - VISIT_WARMUP_EXACT_MS

    def plan_visit(t: int) -> list:
        nonlocal visit_no
        visit_no += 1
        if rand() < bounce:
            return [[t], ["page_view"], 0, visit_no]
        n = min(2 + int(rng.expovariate(extra_rate)), VISIT_MAX_EVENTS)
        buys = rand() < buy_if_stays
        if buys and n < 3:
            n = 3
        if t < rough_before:  # long before the stream: only when it ends matters (its sum of
            # think times, drawn as a normal); planned in full only if it may reach the stream
            end = t + max((n - 1) * think_low, int(gauss((n - 1) * think_mean, think_sd * math.sqrt(n - 1))))
            if end < start_ms:
                return [[t, end], ["page_view", "page_view"], 0, visit_no]
        types = ["page_view"]
        for _ in range(n - 1 - buys):
            types.append(_EVENT_TYPES[min(bisect_right(VISIT_EVENT_CUM, rand() * mix_total), 3)])
        if buys:
            if "add_to_cart" not in types:
                types[-1] = "add_to_cart"
            types.append("purchase")
        times = [t]
        for _ in range(n - 1):
            think = int(exp(gauss(think_mu, VISIT_THINK_SIGMA)))
            t += think_low if think < think_low else think_high if think > think_high else think
            times.append(t)
        return [times, types, 0, visit_no]

    while True:
        if heap and heap[0] >> 32 <= next_start:
            key = pop(heap)
            t, u = key >> 32, key & 0xFFFFFFFF
        else:  # a visit starts
            t = int(next_start)
            next_start += rng.expovariate(1.0) * between_ms
            if returns and returns[0] >> 32 <= t:
                u = pop(returns) & 0xFFFFFFFF
            else:
                while away and away[0][0] <= t:
                    del busy[away.popleft()[1]]
                for _ in range(64):
                    u = int(rand() * users)
                    if u not in busy and u not in bots:
                        break
                else:
                    continue  # (not reached with at most half the people busy)
            busy[u] = None

        bot = bots.get(u)
        if bot is not None:
            if t <= bot[0]:
                first, bot[2] = bot[2], False
                if t >= start_ms:
                    yield _PlannedEvent(t, u, "page_view" if first or rand() < 0.8 else "click", bot[1])
                push(heap, (t + rng.randint(*BOT_CLICK_MS)) << 32 | u)
            else:  # the run is over: the next one after a pause
                begin = t + rng.randint(*BOT_PAUSE_MS)
                visit_no += 1
                bots[u] = [begin + rng.randint(*BOT_RUN_MS), visit_no, True]
                push(heap, begin << 32 | u)
            continue

        visit = busy[u]
        if visit is None:
            visit = busy[u] = plan_visit(t)
        times, types, k, number = visit
        if t >= start_ms:
            yield _PlannedEvent(t, u, types[k], number)
        k += 1
        if k < len(times):
            if times[k] < start_ms:  # before the stream: skip to the first event in it (or the end)
                k = min(bisect_left(times, start_ms, k), len(times) - 1)
            visit[2] = k
            push(heap, times[k] << 32 | u)
        elif rand() < VISIT_RETURN_SHARE:  # the visit is over: comes back after a pause ...
            busy[u] = None
            pause = int(exp(gauss(return_mu, VISIT_RETURN_SIGMA)))
            pause = return_low if pause < return_low else return_high if pause > return_high else pause
            push(returns, (t + pause) << 32 | u)
        else:  # ... or leaves for a while
            busy[u] = away  # (any non-None marker: not drawn while away)
            away.append((t + away_ms, u))


def _generate_visits(config: GeneratorConfig) -> Iterator[GeneratedMessage]:
    """The visits mode's messages (see the module docstring); same message rules as the others."""
    rng = random.Random(config.seed)
    rand = rng.random
    plan = visit_plan(config)
    start_ms = config.start_ms
    if start_ms is None:
        # Paced (rate): event time keeps up with the wall clock from now. Unpaced: the stream
        # is sent in far less time than it spans, so it is placed to end about now instead of
        # running hours into the future (beyond the service's allowed future).
        now = int(time.time() * 1000)
        start_ms = now if config.rate is not None else now - int(config.count / plan.rate * 1000)
    timeline = _visit_timeline(config, plan, start_ms)
    id_of = _user_id_format(config)
    ids: dict[int, tuple[str, bytes]] = {}
    bots = set(_bot_indices(config, plan))

    def ident(u: int) -> tuple[str, bytes]:
        pair = ids.get(u)
        if pair is None:
            user_id = id_of(u + 1)
            pair = ids[u] = (user_id, user_id.encode())
        return pair

    draws = _Draws(rng, config.seed, start_ms)
    pick_page, pick_product = draws.page, draws.product
    encode_ts, optional_fields = draws.timestamp, draws.optional_fields
    pages, n_pages = draws.pages, len(draws.pages)
    checkout = HOST + "/checkout"

    malformed_at = config.malformed_fraction
    late_at = malformed_at + config.late_fraction
    disorder_at = late_at + config.out_of_order_fraction
    max_disorder = config.max_disorder_ms
    variants = _malformed_variants()
    n_variants = len(variants)
    malformed_seen = 0
    state: dict[int, list] = {}
    seen: list[int] = []


    planned = None
    for i in range(config.count):
        if planned is None:
            planned = next(timeline)
        base, u, event_type, visit = planned
        user_id, key = ident(u)
        r = rand()
        if r < malformed_at:  # a broken message for the next user; the visit goes on
            st = state.get(u) or [f"s{rng.getrandbits(48):012x}", base, base, None, 0, _USER_AGENTS[0]]
            event = optional_fields(
                {"user_id": user_id, "event_type": "page_view", "url": pick_page(), "ts": encode_ts(base)},
                st, i, None,
            )
            key, value = variants[malformed_seen % n_variants](event, key, malformed_seen // n_variants)
            malformed_seen += 1
            yield GeneratedMessage(key, value, "malformed")
            continue

        if r < late_at and seen:  # a replayed old event, far behind the newest time of its user
            if u not in state:
                u = seen[int(rand() * len(seen))]
                user_id, key = ident(u)
            st = state[u]
            ts = st[_MAX_TS] - LATE_MIN_BEHIND_MS - int(rand() * LATE_SPREAD_MS)
            event = optional_fields(
                {"user_id": user_id, "event_type": "page_view" if rand() < 0.7 else "click",
                 "url": pick_page(), "ts": encode_ts(ts)},
                st, i, None,
            )
            yield GeneratedMessage(key, codec.dumps(event), "late")
            continue

        planned = None  # this message is the planned event
        if late_at <= r < disorder_at:
            kind = "out_of_order"
            ts = base - 1 - int(rand() * max_disorder)
        else:
            kind = "valid"
            ts = base
        st = state.get(u)
        if st is None:
            agent = BOT_USER_AGENT if u in bots else _USER_AGENTS[int(rand() * len(_USER_AGENTS))]
            st = state[u] = [None, base, ts, None, 0, agent, None]
            seen.append(u)
        if st[_VISIT] != visit:  # a new visit (or one that was under way when the stream began)
            st[_VISIT] = visit
            st[_SESSION] = f"s{rng.getrandbits(48):012x}"
            previous = None
            referrer = _EXTERNAL_REFERRERS[int(rand() * len(_EXTERNAL_REFERRERS))]
        else:
            previous = st[_PAGE]
            referrer = previous
        st[_LAST_BASE] = base
        if ts > st[_MAX_TS]:
            st[_MAX_TS] = ts

        if event_type == "purchase" and not st[_CART]:
            event_type = "add_to_cart"  # (its add_to_cart was before the stream began)
        if event_type == "page_view":
            url = pages[int(rand() * n_pages)] if u in bots else pick_page()  # bots crawl everything
            st[_PAGE] = url
        elif event_type == "add_to_cart":
            url = previous if previous is not None and "/p/" in previous else pick_product()
            st[_CART] += 1
            referrer = None
        elif event_type == "purchase":
            url = checkout
            st[_CART] = 0
            st[_PAGE] = url
        else:
            url = previous if previous is not None else pick_page()
            referrer = None

        event = optional_fields(
            {"user_id": user_id, "event_type": event_type, "url": url, "ts": encode_ts(ts)},
            st, i, referrer,
        )
        yield GeneratedMessage(key, codec.dumps(event), kind)
