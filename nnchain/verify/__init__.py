"""Checking a recorded sweep against DESIGN.md's invariants 1-4 (``nnchain sweep verify``).

``verify_sweep`` works on an open ledger and MLflow client; ``verify`` opens both from
the command line's options, refusing stores that do not exist (nothing is created).
"""

from __future__ import annotations

from nnchain.verify.checks import (
    DEFAULT_GRACE_SECONDS,
    LEDGER,
    Report,
    Violation,
    check_sweep,
    verify_sweep,
)

__all__ = ["DEFAULT_GRACE_SECONDS", "LEDGER", "Report", "Violation", "check_sweep", "verify",
           "verify_sweep"]


def verify(sweep_ref: str, *, tracking_uri: str | None = None, ledger_url: str | None = None,
           grace_seconds: float = DEFAULT_GRACE_SECONDS) -> Report:
    """Open the sweep's ledger and MLflow store (both must exist), then ``check_sweep``."""
    from nnchain.errors import SpecError
    from nnchain.ledger.store import open_existing_ledger
    from nnchain.tracking.store import open_client, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    store_file = sqlite_path(uri)
    if store_file is not None and not store_file.exists():
        raise SpecError("--tracking-uri", f"must point at an existing MLflow store, there is "
                                          f"no {store_file}")
    ledger = open_existing_ledger(uri, ledger_url)
    try:
        client = open_client(uri)
        return check_sweep(ledger, client, uri, sweep_ref, grace_seconds=grace_seconds)
    finally:
        ledger.dispose()
