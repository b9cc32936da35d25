"""The ``nnchain`` command: click groups that parse, call one service function, exit.

Exit codes (``nnchain/exitcodes.py``, re-exported here for the commands): 0 success; 1 the
work ran but something failed (a trial, a gradient check, a verify) or could not run (a local
Ray that would not start); 2 bad input, refused before anything was written; 130 interrupted.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import zipfile

import click

from nnchain import __version__
from nnchain.errors import SpecError, StoreError
from nnchain.exitcodes import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ExitCode
from nnchain.limits import ENV

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "ExitCode", "main"]


def invoke_translated(invoke, ctx: click.Context):
    """``invoke(ctx)`` with nnchain's user errors turned into one line on stderr and exit
    code 2, a local Ray that would not start into one line and exit code 1 (130 on Ctrl-C).

    Input that got past the checks and still exhausted memory, overflowed, nested too
    deeply or was the wrong kind of file is also one line and exit code 2, not a traceback.
    """
    try:
        return invoke(ctx)
    except (SpecError, StoreError) as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    except (MemoryError, OverflowError, RecursionError, UnicodeDecodeError,
            zipfile.BadZipFile) as exc:
        click.echo(f"error: {_exhausted(exc)}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        refusal = _server_refusal(exc)
        if refusal is None and not _is_ray_start_error(exc):
            raise
        click.echo(f"error: {refusal or exc}", err=True)
        ctx.exit(EXIT_FAILED)


REFUSED = re.compile(r"endpoint (\S+) failed with error code (401|403)\b.*?"
                     r"(?:Response body: '(.*)')?$", re.S)


def _server_refusal(exc: Exception) -> str | None:
    """One line for a tracking server that refused the user (HTTP 401 or 403: a wrong
    password, no permission on the experiment), else None."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    found = REFUSED.search(str(exc))
    if found is None:
        return None
    endpoint, code, body = found.groups()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no user)"
    reason = (body or "").strip().splitlines()[0][:200] if body else ""
    what = "does not know that user or password" if code == "401" else \
        "does not allow it"
    return (f"the MLflow tracking server refused {endpoint} for user {user!r}: it {what}"
            f"{f' ({reason})' if reason else ''} (HTTP {code})")


def _is_ray_start_error(exc: Exception) -> bool:
    """Whether ``exc`` is a local Ray that would not start; only code that imported
    ``nnchain.runner.cluster`` raises one, so a command that did not is not made to."""
    cluster = sys.modules.get("nnchain.runner.cluster")
    return cluster is not None and isinstance(exc, cluster.RayStartError)


def _exhausted(exc: BaseException) -> str:
    """One line for an input that exhausted a resource or was the wrong kind of file."""
    detail = (str(exc).splitlines() or [""])[0][:160]
    detail = f" ({type(exc).__name__}{': ' + detail if detail else ''})"
    if isinstance(exc, MemoryError):
        return (f"the input needs more memory than this process may use{detail}; see "
                f"'Limits' in the README ({ENV})")
    if isinstance(exc, OverflowError):
        return f"a number in the input is too large for a 64-bit float or integer{detail}"
    if isinstance(exc, RecursionError):
        return f"the input is nested too deeply{detail}"
    return f"a file in the input is not of the kind expected{detail}"


class LazyGroup(click.Group):
    """A group whose subcommands are imported when one is run or listed, so that a
    command pays only for its own imports (``compare`` never loads numpy, Ray or MLflow).

    ``lazy``: command name -> ``"module:attribute"``.
    """

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


class TranslatingGroup(LazyGroup):
    """The ``nnchain`` group: every subcommand's errors translated (``invoke_translated``)."""

    def invoke(self, ctx: click.Context):
        return invoke_translated(super().invoke, ctx)


COMMANDS = {
    "train": "nnchain.cli.train:train", "gradcheck": "nnchain.cli.train:gradcheck",
    "sweep": "nnchain.cli.main:_sweep_group", "compare": "nnchain.cli.compare:compare",
    "ui": "nnchain.cli.ui:ui", "report": "nnchain.cli.report:report",
    "promote": "nnchain.cli.models:promote", "predict": "nnchain.cli.models:predict",
}


@click.group(cls=TranslatingGroup, context_settings={"help_option_names": ["-h", "--help"]},
             lazy=COMMANDS)
@click.version_option(__version__, prog_name="nnchain")
def main() -> None:
    """Backpropagation experiments: train numpy networks, sweep them on Ray, record in MLflow."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # offline by default: no telemetry or usage reports unless the user opts in
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def __getattr__(name: str):
    """``_sweep_group``: ``nnchain sweep`` with its subcommands defined elsewhere added."""
    if name != "_sweep_group":
        raise AttributeError(name)
    from nnchain.cli import submit, verify
    from nnchain.cli.sweep import sweep

    sweep.add_command(verify.verify)
    sweep.add_command(submit.submit)
    return sweep


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
