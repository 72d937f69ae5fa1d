"""The user stage: per-user windows, where lateness is decided once per event (SPEC: per user).

Events on time for their user go on to the page stage, grouped by page shard.
"""

from typing import List

from clickstream.core.aggregations import USER_ENGAGEMENT
from clickstream.core.records import PAGE_IN, USER
from clickstream.core.shards import PAGE_SHARD_OF
from clickstream.core.windows import ClosedWindow
from clickstream.stages.shard import WindowShard


class UserShard(WindowShard):
    aggregation = USER_ENGAGEMENT
    output = USER

    def _key_of(self, event) -> str:
        return event.user_id

    def _add(self, chunks: List[list], now: int, closed: List[ClosedWindow], late: list) -> list:
        windows = self.windows
        to_pages: dict = {}
        for chunk in chunks:
            windows.add_many([event.user_id for event in chunk], chunk, now, closed, late)
            if late:
                late_ones = {id(late_one[0]) for late_one in late}
                chunk = [event for event in chunk if id(event) not in late_ones]
            for event in chunk:
                shard = PAGE_SHARD_OF[event.url]
                bucket = to_pages.get(shard)
                if bucket is None:
                    to_pages[shard] = [event]
                else:
                    bucket.append(event)
        return [(PAGE_IN, item) for item in to_pages.items()]
