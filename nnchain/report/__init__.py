"""Comparing the trials of sweeps from the ledger: queries, filters, grouping, output.

``compare_sweeps`` is the service behind ``nnchain compare``: ``query`` loads trials as
plain dicts in two SELECTs, ``keys`` names what can be shown, ``filters`` parses
``--where``, ``table`` ranks and groups, ``output`` prints a table, CSV or JSON.
"""

__all__ = ["Column", "Comparison", "compare_loaded", "compare_sweeps", "open_existing_ledger"]


def __getattr__(name: str):
    """The names above, imported when first used: ``nnchain.report.output`` and the lean
    ``compare`` path import this package without paying for SQLAlchemy."""
    if name in ("Column", "Comparison"):
        from nnchain.report import table

        return getattr(table, name)
    if name in __all__:
        from nnchain.report import compare

        return getattr(compare, name)
    raise AttributeError(name)
