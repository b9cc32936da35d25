"""Recording straight into the SQL store behind a tracking server.

Through an MLflow tracking server every value costs an HTTP request's share and the
server's ORM (``docs/scale.md``). Where the credentials allow, a sweep writes its trials'
runs and values into the server's own database instead: ``NNCHAIN_TRACKING_STORE_URL``
names it (a ``postgresql`` or ``sqlite`` URL; the password from libpq's ``PGPASSFILE`` or
``PGPASSWORD``, as for the ledger). Everything else still goes through the server, so
its permissions decide who records where: the experiment and the sweep's parent run are
made through it (basic auth: the user needs EDIT on the experiment), and artifacts are
uploaded to it. The deployment grants its ``nnchain`` database role these rights
(``MLFLOW_DIRECT_WRITER``, ``services/mlflow/entrypoint.py``).

The variable is read only when the tracking URI is a server's (http or https). Before a
sweep writes anything, ``check_store`` makes sure the database is the server's: the
experiments the server shows must be in it, with the same names and creation times.
"""

from __future__ import annotations

import os

from nnchain.credentials import scrub, scrub_text
from nnchain.errors import SpecError, StoreError
from nnchain.tracking.store import is_sql_store

STORE_ENV = "NNCHAIN_TRACKING_STORE_URL"
EXPERIMENTS_COMPARED = 20


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def sql_url(tracking_uri: str) -> str | None:
    """The database runs and values of ``tracking_uri`` are written into: the URI itself
    for an SQL store, ``NNCHAIN_TRACKING_STORE_URL`` for a tracking server (None unset or
    not a database URL: ``check_store`` refuses that), None for any other store."""
    if is_sql_store(tracking_uri):
        return tracking_uri
    url = _configured(tracking_uri)
    return url if url is not None and is_sql_store(url) else None


def _configured(tracking_uri: str) -> str | None:
    """``NNCHAIN_TRACKING_STORE_URL`` as given, for a tracking server's URI (else None)."""
    if not is_server(tracking_uri):
        return None
    return os.environ.get(STORE_ENV, "").strip() or None


def check_store(tracking_uri: str) -> None:
    """``SpecError`` unless ``NNCHAIN_TRACKING_STORE_URL``, when it applies, is a database
    this process can read and the one behind ``tracking_uri``'s server (``StoreError``: the
    server did not answer); nothing is written."""
    url = _configured(tracking_uri)
    if url is None:
        return
    if not is_sql_store(url):
        raise SpecError(STORE_ENV, f"must be the postgresql:// or sqlite:/// URL of the "
                                   f"tracking server's database, got {scrub(url)!r}")
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    try:
        shown = MlflowClient(tracking_uri).search_experiments(
            max_results=EXPERIMENTS_COMPARED, view_type=ViewType.ALL)
    except Exception as exc:  # refused, unauthorised, ...: one line
        text = str(exc).strip().splitlines()
        raise StoreError(f"cannot reach the tracking server {tracking_uri}: "
                         f"{scrub_text(text[0]) if text else type(exc).__name__}") from None
    if not shown:
        raise SpecError(STORE_ENV, f"must be the database behind {tracking_uri}; the server "
                                   f"shows this user no experiment to compare it with")
    stored = _experiments(url, [e.experiment_id for e in shown])
    for experiment in shown:
        found = stored.get(experiment.experiment_id)
        if found != (experiment.name, experiment.creation_time):
            raise SpecError(STORE_ENV, f"must be the database behind {tracking_uri}; "
                                       f"experiment {experiment.experiment_id} "
                                       f"({experiment.name!r}) of the server is "
                                       f"{'not in it' if found is None else 'another there'}"
                                       f" ({scrub(url)})")


def _experiments(url: str, ids: list[str]) -> dict[str, tuple[str, int | None]]:
    """id -> (name, creation time) of the experiments ``ids`` in the database ``url``."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT experiment_id, name, creation_time FROM experiments "
                                "WHERE experiment_id IN :ids").bindparams(
                    sqlalchemy.bindparam("ids", expanding=True)),
                {"ids": [int(i) for i in ids]}).all()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise SpecError(STORE_ENV, f"must be a database this user can read, "
                                   f"{scrub(url)} answered: "
                                   f"{scrub_text(reason[0]) if reason else type(exc).__name__}"
                        ) from None
    finally:
        engine.dispose()
    return {str(row[0]): (row[1], row[2]) for row in rows}
