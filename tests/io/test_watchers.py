"""The cluster watcher without a broker: how it treats looks that fail (tests/integration/
test_cluster.py reads the real group)."""

from clickstream.io.watchers import ClusterProgress
from clickstream.runtime.progress import IdleClock
from clickstream.runtime.settings import Settings


def test_the_cluster_watcher_says_once_when_it_cannot_read_the_group(caplog):
    """A look that fails counts as a backlog; twenty in a row (10 s) are logged once, and the
    recovery too."""
    watcher = ClusterProgress(Settings.from_env({}), 2, clock=IdleClock())
    answers = [RuntimeError("broker away")] * 25 + [True]

    def caught_up(admin):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watcher.caught_up = caught_up
    with caplog.at_level("WARNING", logger="clickstream.watchers"):
        verdicts = [watcher.look(None) for _ in range(26)]
    assert verdicts == [False] * 25 + [True]
    assert [r.getMessage() for r in caplog.records] == [
        "cluster progress unknown for 20 looks (broker away); idle closing waits until the "
        "consumer group clickstream can be read",
        "cluster progress readable again after 25 failed looks"]
