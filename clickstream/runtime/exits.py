"""How the process ends on purpose: one line on stderr, a status, never a traceback or a secret."""

import os
import sys
from typing import Callable, List

RESTART_STATUS = 75  # the exit status clickstream.runtime.cluster restarts on (EX_TEMPFAIL)

# Whatever may hold a secret registers a redactor here (the Kafka client config does, for the
# pass-through SASL/SSL properties), so no exit line ever prints one.
_REDACTORS: List[Callable[[str], str]] = []


def redact_with(redactor: Callable[[str], str]) -> None:
    if redactor not in _REDACTORS:
        _REDACTORS.append(redactor)


def redact(message: str) -> str:
    for redactor in _REDACTORS:
        message = redactor(message)
    return message


def fail(message: str) -> None:
    """One line on stderr, exit 2: how every start-up problem ends."""
    print(f"clickstream: {redact(message)}", file=sys.stderr)
    raise SystemExit(2)


def stop(message: str, status: int = 1) -> None:
    """One line on stderr, then exit: how a running dataflow stops on an error it must not pass.

    An exception raised inside a Bytewax connector ends in a Rust panic dump that buries the
    reason, so the process ends here instead. Nothing is lost: the epoch in progress was not
    snapshotted, and a restart from the recovery store redoes it.
    """
    print(f"clickstream: {redact(message)}", file=sys.stderr, flush=True)
    os._exit(status)
