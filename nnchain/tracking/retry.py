"""Retrying store writes through an outage (PostgreSQL restarting, the tracking server
down for a while): transient errors are retried with backoff up to a deadline, anything
else is raised at once."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_TRANSIENT_TEXT = ("connection", "could not connect", "server closed", "max retries exceeded",
                   "temporarily unavailable", "timed out", "terminating", "starting up",
                   "shutting down", "database is locked", "broken pipe", "503", "502")


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` looks like a store that is briefly away rather than a bad request."""
    import sqlalchemy.exc

    from nnchain.errors import StoreUnavailable

    if isinstance(error, StoreUnavailable | sqlalchemy.exc.OperationalError |
                  sqlalchemy.exc.InterfaceError | sqlalchemy.exc.DisconnectionError |
                  ConnectionError | TimeoutError):
        return True
    name = type(error).__name__
    if name in ("ConnectionError", "OperationalError", "ReadTimeout", "ConnectTimeout"):
        return True
    text = str(error).lower()
    return (name == "MlflowException" or name == "RestException") and \
        any(part in text for part in _TRANSIENT_TEXT)


def with_retry(call: Callable[..., T], *args, deadline: float = 300.0, what: str = "store",
               **kwargs) -> T:
    """``call(*args, **kwargs)``, retried on transient errors for up to ``deadline`` s."""
    delay, started, warned = 0.5, time.monotonic(), False
    while True:
        try:
            result = call(*args, **kwargs)
            if warned:
                print(f"{what} reachable again", file=sys.stderr)
            return result
        except Exception as error:
            if not is_transient(error) or time.monotonic() - started + delay > deadline:
                raise
            if not warned:
                print(f"{what} unavailable ({type(error).__name__}); retrying for up to "
                      f"{deadline:g} s", file=sys.stderr)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
