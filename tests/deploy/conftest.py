"""Fixtures of the deployment tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def nnchain_cli():
    """The click group with ``sweep submit`` registered (for CliRunner)."""
    from nnchain.cli.main import main
    from nnchain.cli.submit import submit
    from nnchain.cli.sweep import sweep

    if "submit" not in sweep.commands:
        sweep.add_command(submit)
    return main
