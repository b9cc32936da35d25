"""Comparing the trials of sweeps from the ledger: queries, filters, grouping, output.

``compare_sweeps`` is the service behind ``nnchain compare``: ``query`` loads trials as
plain dicts in two SELECTs, ``keys`` names what can be shown, ``filters`` parses
``--where``, ``table`` ranks and groups, ``output`` prints a table, CSV or JSON.
"""

from nnchain.report.compare import compare_loaded, compare_sweeps, open_existing_ledger
from nnchain.report.table import Column, Comparison

__all__ = ["Column", "Comparison", "compare_loaded", "compare_sweeps", "open_existing_ledger"]
