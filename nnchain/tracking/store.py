"""Where runs are recorded: the tracking URI, its artifact root, and opening the store once.

The embedded default is ``./nnchain-runs/``: an SQLite MLflow store ``mlflow.db`` and
artifacts under ``artifacts/``. ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` select a
PostgreSQL database or an MLflow tracking server instead, as MLflow users expect.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nnchain.credentials import scrub, split_http_credentials
from nnchain.credentials import scrub as redact  # noqa: F401 - its old name here
from nnchain.errors import SpecError, StoreError
from nnchain.names import check_name  # noqa: F401 - the one name rule, re-exported here

DEFAULT_ROOT = "nnchain-runs"
# the experiment's kind (model training, not GenAI), as MLflow's API reports it. MLflow's
# UI reads it only with its "GenAI | Model training" switch off; 3.17 has the switch on,
# which follows the browser's saved choice instead: `nnchain ui`'s start page sets that
KIND_TAG = "mlflow.experimentKind"
KIND_TRAINING = "custom_model_development"
_PG_LOCK = 0x6E6E6368  # "nnch": the advisory lock key of store creation


def every_page(search, page_size: int = 1000, **arguments) -> Iterator:
    """Every result of a paged MLflow search (``client.search_runs``,
    ``search_experiments``): page after page until the store gives no next token."""
    token = None
    while True:
        page = search(max_results=page_size, page_token=token, **arguments)
        yield from page
        token = page.token
        if not token:
            return


def default_root() -> Path:
    return Path(os.environ.get("NNCHAIN_HOME", DEFAULT_ROOT)).resolve()


def is_sql_store(tracking_uri: str) -> bool:
    """Whether the store is a database (SQLite, PostgreSQL) whose tables ``mlflow_sql``
    may reach directly, on a schema it was tested with (a tracking server only through
    its API)."""
    return tracking_uri.startswith(("sqlite:", "postgresql"))


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI in force: the option, then ``MLFLOW_TRACKING_URI``, then the default.

    A tracking server's ``http://user:password@host`` comes back without its userinfo,
    which moves into ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` before any
    client is made (``tracking_credentials``); MLflow's "View run ... at: URL" lines are off.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    quiet_mlflow()
    if not uri:
        return f"sqlite:///{default_root() / 'mlflow.db'}"
    if "://" not in uri and not uri.startswith("sqlite:"):
        # a bare directory, as `mlflow ui --backend-store-uri ./dir` users write it
        return f"sqlite:///{Path(uri).resolve() / 'mlflow.db'}"
    return tracking_credentials(uri)


def quiet_mlflow() -> None:
    """MLflow prints "View run NAME at: URL" on stdout when a run on a tracking server
    ends (``TrackingServiceClient._log_url``); nnchain's stdout holds only its own output
    (``--format json`` stays JSON), so that switch of MLflow's is always on."""
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def tracking_credentials(uri: str) -> str:
    """``uri`` without the user and password of an http(s) tracking server: they go to
    MLflow's own variables instead, so no client, log line or record sees them in a URI."""
    clean, user, password = split_http_credentials(uri)
    if user is None and password is None:
        return uri
    if user:
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
    if password is not None:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:  # children inherit no password
        os.environ["MLFLOW_TRACKING_URI"] = clean
    return clean


def sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI, or None for other stores."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(uri.split("sqlite:///", 1)[-1])


def artifact_root(uri: str) -> str | None:
    """Where new experiments keep artifacts: beside an SQLite file, else the default root.

    A tracking server decides for itself (None).
    """
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    db_file = sqlite_path(uri)
    base = db_file.parent if db_file is not None else default_root()
    return (base / "artifacts").resolve().as_uri()


def prepare_location(uri: str, option: str = "--tracking-uri") -> None:
    """Make sure an SQLite store's directory exists and is writable (nothing else is created).

    Folders nnchain makes are 0700: the stores in them hold everything a sweep recorded.
    A store or lock file that is a symbolic link is refused (``refuse_symlinks``)."""
    db_file = sqlite_path(uri)
    if db_file is None:
        return
    directory = db_file.parent
    try:
        private_dirs(directory)
    except OSError as exc:
        raise SpecError(option, f"must be a writable location, cannot create "
                                f"'{directory}': {exc.strerror}") from None
    refuse_symlinks(option, db_file)
    if not os.access(directory, os.W_OK) or (db_file.exists() and not os.access(db_file, os.W_OK)):
        raise SpecError(option, f"must be a writable location, '{db_file}' is not")


def private_dirs(directory: Path) -> None:
    """``directory`` and its missing parents made, each new one 0700 (existing ones kept)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass


def refuse_symlinks(option: str, db_file: Path) -> None:
    """A store, its lock or its SQLite side files as symbolic links are refused: writing
    through a link planted there would create or change a file anywhere the user may write."""
    for path in (db_file, *(db_file.with_name(db_file.name + suffix)
                            for suffix in (".lock", "-wal", "-shm", "-journal"))):
        if path.is_symlink():
            raise SpecError(option, f"must not be a symbolic link, '{path}' is one (to "
                                    f"'{os.readlink(path)}'); remove it or use another store")


def open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """A file descriptor on ``path``, never through a symbolic link (``O_NOFOLLOW``); a
    file it creates is 0600."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"'{path}' is a symbolic link; nnchain does not open stores or "
                             f"locks through one") from None
        raise


def open_client(uri: str):
    """An MlflowClient on ``uri`` whose store exists and is at the installed schema.

    Called once by the driver before any worker runs: it creates a brand-new store
    (tables and migrations) in this one process. An out-of-date schema is refused with
    the fix, never migrated silently.
    """
    prepare_location(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nnchain.tracking import mlflow_sql

    try:
        with creation_lock(uri):  # one process at a time creates or checks the schema
            _create_sqlite_atomically(uri)
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
            db_file = sqlite_path(uri)
            if db_file is not None:
                mlflow_sql.use_wal(db_file)
    except MlflowException as exc:
        text = str(exc)
        if "out-of-date database schema" in text or "mlflow db upgrade" in text:
            raise StoreError(f"the MLflow store {scrub(uri)} has an older schema than the "
                             f"installed MLflow; back it up, then run: mlflow db upgrade "
                             f"{scrub(uri)}") from None
        raise StoreError(f"cannot open the MLflow store {scrub(uri)}: "
                         f"{text.splitlines()[0] if text else type(exc).__name__}") from None
    except Exception as exc:  # connection refused, bad driver, ... : one line, no traceback
        raise StoreError(f"cannot open the MLflow store {scrub(uri)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         ) from None
    return client


@contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Serialise store creation across processes: several processes creating one new
    store at once can break it for good (SQLite: ``_alembic_tmp_tags already exists``).

    SQLite: an exclusive ``flock`` on ``<db>.lock``; PostgreSQL: an advisory lock.
    """
    db_file = sqlite_path(uri)
    if db_file is not None:
        import fcntl

        with os.fdopen(open_private(db_file.parent / f"{db_file.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if uri.startswith("postgresql"):
        from nnchain.tracking.mlflow_sql import advisory_lock

        with advisory_lock(uri, _PG_LOCK):
            yield
        return
    yield


def _create_sqlite_atomically(uri: str) -> None:
    """A new SQLite store is made under another name and linked into place, so a process
    killed during MLflow's migrations never leaves a half-made store behind. It is a copy
    of the template made by this MLflow's migrations (``template.py``), else made by them."""
    db_file = sqlite_path(uri)
    if db_file is None or db_file.exists():
        return
    from mlflow import MlflowClient

    from nnchain.tracking.mlflow_sql import use_large_pages
    from nnchain.tracking.template import copy_template

    draft = db_file.with_name(f"{db_file.name}.new")
    draft.unlink(missing_ok=True)
    os.close(open_private(draft, os.O_RDWR | os.O_CREAT | os.O_EXCL))  # 0600, as SQLite keeps it
    if not copy_template(draft):
        MlflowClient(tracking_uri=f"sqlite:///{draft}").search_experiments(max_results=1)
        use_large_pages(draft)  # before WAL mode, which fixes the page size
    try:
        os.link(draft, db_file)  # only where no store is: another process (`mlflow ui`)
    except FileExistsError:      # may have made one meanwhile, and keeps using it
        pass
    except OSError:  # a file system without hard links
        os.replace(draft, db_file)
    draft.unlink(missing_ok=True)


def experiment_id(client, name: str, location: str | None) -> str:
    """The id of experiment ``name``, created if missing; safe when two processes race.

    It carries ``KIND_TAG``, the kind MLflow's API reports; which view MLflow 3.17's UI
    opens it on follows the browser's saved choice, which ``nnchain ui`` sets."""
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is None:
        try:
            return client.create_experiment(name, artifact_location=location,
                                            tags={KIND_TAG: KIND_TRAINING})
        except MlflowException:
            existing = client.get_experiment_by_name(name)  # another process created it first
            if existing is None:
                raise
    if KIND_TAG not in existing.tags:
        client.set_experiment_tag(existing.experiment_id, KIND_TAG, KIND_TRAINING)
    return existing.experiment_id
