"""nnchain/credentials.py: the one scrubber, and the places that show URIs through it."""

from __future__ import annotations

import pytest

from nnchain.credentials import has_secret, scrub, scrub_text, secrets_of, split_http_credentials
from nnchain.errors import SpecError, StoreError

SECRET = "Pl4nted-S3cret"
BOTH_FORMS = [
    f"postgresql://alice:{SECRET}@db:5432/runs",
    f"postgresql+psycopg://alice@db:5432/runs?password={SECRET}",
    f"postgresql://db/runs?sslmode=verify-full&sslpassword={SECRET}",
    f"http://alice:{SECRET}@mlflow:5000",
    f"https://mlflow.example/api?token={SECRET}",
    f"https://mlflow.example/api?Access_Token={SECRET}&page=2",
    f"postgresql://alice:{SECRET}@db/runs?password={SECRET}",
    f"mysql://alice:{SECRET}@x@db/runs",  # an '@' in an unencoded password
]


@pytest.mark.parametrize("uri", BOTH_FORMS)
def test_every_form_of_password_is_removed(uri):
    assert has_secret(uri)
    shown = scrub(uri)
    assert SECRET not in shown and "***" in shown
    assert SECRET in secrets_of(uri) or f"{SECRET}@x" in secrets_of(uri)
    assert SECRET not in scrub_text(f"cannot open {uri}: refused")


def test_what_is_kept():
    assert scrub("postgresql://alice:pw@db:5432/runs?sslmode=require&password=pw") == \
        "postgresql://alice:***@db:5432/runs?sslmode=require&password=***"
    for plain in ("sqlite:////tmp/x/mlflow.db", "http://mlflow:5000", "postgresql://u@h/db",
                  "postgresql://h/db?sslmode=require&sslkey=/k.pem", "not a uri", ""):
        assert scrub(plain) == plain and not has_secret(plain)


def test_free_text_and_libpq_pairs():
    text = f'connection failed: host=db user=alice password={SECRET} dbname=runs; "{BOTH_FORMS[0]}"'
    assert SECRET not in scrub_text(text) and "user=alice" in scrub_text(text)


def test_error_lines_never_hold_a_planted_password():
    for uri in BOTH_FORMS:
        assert SECRET not in str(StoreError(f"cannot open the ledger {uri}: refused"))
        assert SECRET not in str(SpecError("--tracking-uri", f"got {uri!r}"))


def test_tracking_server_credentials_split_off():
    assert split_http_credentials("http://al%40ce:p%3Aw@h:5000/x") == ("http://h:5000/x",
                                                                      "al@ce", "p:w")
    assert split_http_credentials("postgresql://u:p@h/db") == ("postgresql://u:p@h/db",
                                                               None, None)


def test_resolving_a_tracking_server_moves_its_credentials(monkeypatch):
    from nnchain.tracking.store import resolve_tracking_uri

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI",
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@mlflow:5000")
    assert resolve_tracking_uri(None) == "http://mlflow:5000"
    import os

    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == SECRET
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
