"""A throwaway SQLite ledger holding the sweeps of ``report_sweep_data``."""

from __future__ import annotations

import pytest
from report_sweep_data import add_sweep

from nnchain.ledger.store import open_ledger


@pytest.fixture
def ledger_url(tmp_path):
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def ledger(ledger_url):
    ledger = open_ledger(ledger_url)
    add_sweep(ledger, "grid", "val_cost", "minimize")
    add_sweep(ledger, "acc", "val_accuracy", "maximize")
    yield ledger
    ledger.dispose()
