"""The ``nnchain`` command's exit codes, in one place and importable without click.

``cli/main.py`` documents and re-exports them for the commands; ``runner/submit.py`` reads a
submitted driver's exit code with them.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # the work ran and succeeded
    FAILED = 1  # the work ran (or could not run) and something failed: a trial, a check
    BAD_INPUT = 2  # refused before anything was written
    INTERRUPTED = 130  # Ctrl-C (a sweep stays resumable)


EXIT_OK = ExitCode.OK
EXIT_FAILED = ExitCode.FAILED
EXIT_BAD_INPUT = ExitCode.BAD_INPUT
EXIT_INTERRUPTED = ExitCode.INTERRUPTED
