"""Picking one tag out of a stage's tagged outputs, in the shape the next step takes."""

from typing import Callable, Optional, Tuple

from clickstream.core.records import Tag

Keyed = Tuple[str, Tuple[Tag, tuple]]  # (shard, (tag, payload)) as stateful_batch emits it


def payloads(tag: Tag) -> Callable[[Keyed], Optional[tuple]]:
    """(shard, (tag, payload)) -> payload, for items of `tag` (filter_map drops None)."""
    def pick(keyed: Keyed):
        kind, payload = keyed[1]
        return payload if kind == tag else None
    return pick


def sink_items(tag: Tag) -> Callable[[Keyed], Optional[Tuple[str, list]]]:
    """(shard, (tag, (partition, records))) -> ("partition", records): routes a sink."""
    def pick(keyed: Keyed):
        kind, payload = keyed[1]
        return sink_item(payload) if kind == tag else None
    return pick


def sink_item(payload: Tuple[int, list]) -> Tuple[str, list]:
    partition, records = payload
    return str(partition), records
