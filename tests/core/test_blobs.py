"""Snapshot groups: packed (pickle in a zstd frame), bare pickles from before read as they are,
anything else refused in one line."""

import pickle
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickstream.core.blobs import ZSTD_MAGIC, is_packed, pack, unpack

GROUP = {"u1": [(1_000, 4_000, [(1_000, 0, "/a")], None)], "u2": [1, {"/b", "/c"}, 2**40]}
PACKED = pack(GROUP)


@pytest.mark.parametrize("blob, packed, expected", [
    (PACKED, True, GROUP),
    (pickle.dumps(GROUP, pickle.HIGHEST_PROTOCOL), False, GROUP),  # WindowsSnapshot 4 and before
    (pickle.dumps(GROUP, 2), False, GROUP),
    (pack({}), True, {}),
], ids=["packed", "bare-highest", "bare-protocol-2", "packed-empty"])
def test_packed_and_bare_groups_read_back(blob, packed, expected):
    assert is_packed(blob) is packed
    assert unpack(blob) == expected


@pytest.mark.parametrize("blob, message", [
    (PACKED[:-4], "damaged"),  # truncated frame
    (PACKED[:4] + bytes(len(PACKED) - 4), "damaged"),  # frame header zeroed
    (pickle.dumps(GROUP, pickle.HIGHEST_PROTOCOL)[:-5], "damaged"),  # truncated pickle
    (b"", "neither"),
    (b"{\"json\": 1}", "neither"),
    (pickle.dumps(GROUP, 0), "neither"),  # protocol 0 has no PROTO byte; we never wrote one
], ids=["truncated-frame", "zeroed-frame", "truncated-pickle", "empty", "json", "protocol-0"])
def test_damage_is_a_one_line_value_error(blob, message):
    with pytest.raises(ValueError, match=message) as caught:
        unpack(blob)
    assert "\n" not in str(caught.value)


def test_a_group_is_smaller_packed():
    group = {f"user-{i}": [(1_767_225_600_000 + i * 7, 0, f"/p/{i % 40}")] for i in range(2_000)}
    blob = pack(group)
    assert blob.startswith(ZSTD_MAGIC)
    assert len(blob) * 2 < len(pickle.dumps(group, pickle.HIGHEST_PROTOCOL))


def test_workers_in_threads_pack_at_once():
    """A process's workers are threads; each gets its own zstd contexts."""
    groups = [{f"k{t}-{i}": list(range(i)) for i in range(300)} for t in range(4)]
    results = [None] * 4

    def work(t):
        results[t] = [unpack(pack(groups[t])) for _ in range(50)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == [groups[t]] * 50 for t, r in enumerate(results))


STATE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@given(STATE)
def test_any_state_round_trips_packed(state):
    blob = pack(state)
    assert is_packed(blob) and unpack(blob) == state
