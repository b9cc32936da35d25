"""One exception family for nnchain, translated to exit codes at the CLI boundary.

Every exception here pickles (it may cross a Ray task boundary), so each one
keeps its constructor arguments in ``args``.
"""

from __future__ import annotations

import reprlib

from nnchain.credentials import scrub_text


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounds, plus huge ints shown by size (their str() may be refused or slow)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<integer of about {int(x.bit_length() * 0.30103) + 1} digits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 80, 80, 40
SHOWN_CHARS = 160


def shown(value: object) -> str:
    """A value as an error message shows it: ``repr`` cut to a few dozen characters and three
    levels, so a huge or alias-laden value costs no more to show than a small one."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


class NnchainError(Exception):
    """Base class of every error nnchain raises on purpose. Its text never shows a password
    of a URI it quotes (``nnchain.credentials``)."""

    def __str__(self) -> str:
        return scrub_text(super().__str__())


class SpecError(NnchainError):
    """A user's input is invalid: one line naming the field, what must hold and what was given.

    The CLI turns this into exit code 2, before anything is written.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return scrub_text(f"{self.field}: {self.message}" if self.field else self.message)


class DivergedError(NnchainError):
    """The training cost became NaN or infinite."""

    def __init__(self, epoch: int, cost: float) -> None:
        super().__init__(epoch, cost)
        self.epoch = epoch
        self.cost = cost

    def __str__(self) -> str:
        return f"diverged at epoch {self.epoch}"


class GradientCheckError(NnchainError):
    """An analytic gradient disagrees with central differences beyond the tolerance."""

    def __init__(self, param: str, index: tuple, analytic: float, numeric: float,
                 rel_error: float) -> None:
        super().__init__(param, index, analytic, numeric, rel_error)
        self.param = param
        self.index = index
        self.analytic = analytic
        self.numeric = numeric
        self.rel_error = rel_error

    def __str__(self) -> str:
        return (f"gradient of {self.param} at {self.index}: analytic {self.analytic:.6g} vs "
                f"numeric {self.numeric:.6g} (relative error {self.rel_error:.3g})")


class StoreError(NnchainError):
    """A tracking store or ledger cannot be reached, written or is out of date."""


class StoreUnavailable(StoreError):
    """A store that answered before cannot be reached now (restarting, network): transient."""
