"""A throwaway SQLite ledger holding the sweeps of ``report_sweep_data``.

The ledger is built once per session and copied into each test's ``tmp_path``, so a test
may write to its own copy and building 48 trials is paid once.
"""

from __future__ import annotations

import shutil

import pytest
from report_sweep_data import add_sweep

from nnchain.ledger.store import open_ledger


@pytest.fixture(scope="session")
def template_ledger(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "ledger.db"
    ledger = open_ledger(f"sqlite:///{path}")
    add_sweep(ledger, "grid", "val_cost", "minimize")
    add_sweep(ledger, "acc", "val_accuracy", "maximize")
    ledger.dispose()  # the WAL is checkpointed into the file
    return path


@pytest.fixture
def ledger_url(tmp_path, template_ledger):
    shutil.copyfile(template_ledger, tmp_path / "ledger.db")
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def ledger(ledger_url):
    ledger = open_ledger(ledger_url, create=False)
    yield ledger
    ledger.dispose()
