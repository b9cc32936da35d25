"""The one credential scrubber: what of a URI may be shown, stored or forwarded.

A store URI can carry a secret in two places: the userinfo password
(``postgresql://user:PASSWORD@host/db``) and a query parameter, as libpq and SQLAlchemy
read them (``?password=...``, ``?sslpassword=...``) or as HTTP services do (``?token=``,
``?access_token=``, ``?sig=``). ``scrub`` replaces both by ``***``; ``scrub_text`` does
the same for every URI (and ``password=...`` pair) inside a longer text, such as a
driver's error message. The ledger, error lines, logs, ``ui``, ``submit`` and the MLflow
entrypoint all show URIs through here (``services/mlflow/entrypoint.py`` keeps a copy,
as its image has no nnchain; a test checks that the two agree).

Standard library only: ``nnchain.errors`` imports it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

MASK = "***"
# query parameters whose value is a secret, compared without case, '-' or '_'
SECRET_KEYS = frozenset({
    "password", "passwd", "pwd", "pass", "sslpassword", "token", "accesstoken", "authtoken",
    "apitoken", "idtoken", "refreshtoken", "apikey", "accesskey", "secretkey", "secret",
    "clientsecret", "sig", "signature", "credential", "credentials"})
SECRET_SUFFIXES = ("password", "passwd", "token", "secret")
# a URI inside a text: a scheme, '://', then anything up to a space or a quote
_URI_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# key=value pairs outside URIs (libpq conninfo strings: "host=h password=x")
_PAIR_IN_TEXT = re.compile(r"(?i)\b([A-Za-z_-]*(?:password|passwd|pwd|token|secret))"
                           r"(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)")


def is_secret_key(key: str) -> bool:
    """Whether a query parameter named ``key`` holds a secret."""
    plain = unquote(key).lower().replace("-", "").replace("_", "")
    return plain in SECRET_KEYS or plain.endswith(SECRET_SUFFIXES)


def _split_netloc(netloc: str) -> tuple[str | None, str | None, str]:
    """(user, password, host[:port]) of a netloc; the password may itself hold '@'."""
    if "@" not in netloc:
        return None, None, netloc
    userinfo, _, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), host


def _query_pieces(query: str) -> list[tuple[str, str | None]]:
    pieces = []
    for piece in query.split("&"):
        key, equals, value = piece.partition("=")
        pieces.append((key, value if equals else None))
    return pieces


def secrets_of(uri: str) -> list[str]:
    """The secret values ``uri`` holds (raw and decoded), to mask them in other texts."""
    parts = urlsplit(uri)
    _, password, _ = _split_netloc(parts.netloc)
    values = [password] if password else []
    values += [value for key, value in _query_pieces(parts.query)
               if value and is_secret_key(key)]
    return sorted({form for value in values for form in (value, unquote(value))},
                  key=len, reverse=True)


def has_secret(uri: str) -> bool:
    """Whether ``uri`` holds a userinfo password or a secret query parameter."""
    parts = urlsplit(uri)
    return _split_netloc(parts.netloc)[1] is not None or any(
        is_secret_key(key) for key, value in _query_pieces(parts.query) if value is not None)


def scrub(uri: str) -> str:
    """``uri`` with its userinfo password and secret query values replaced by ``***``.

    Everything else is kept as written (user name, host, database, other parameters)."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unparsable netloc ("[" without "]"): show only its scheme
        return f"{uri.split(':', 1)[0]}:{MASK}" if ":" in uri else uri
    user, password, host = _split_netloc(parts.netloc)
    netloc = parts.netloc if password is None else f"{user}:{MASK}@{host}"
    query = "&".join(key if value is None else
                     f"{key}={MASK if is_secret_key(key) and value else value}"
                     for key, value in _query_pieces(parts.query)) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return uri
    return parts._replace(netloc=netloc, query=query).geturl()


def scrub_text(text: str) -> str:
    """``text`` with every URI in it scrubbed and every ``password=...`` pair masked."""
    text = _URI_IN_TEXT.sub(lambda match: scrub(match.group(0)), text)
    return _PAIR_IN_TEXT.sub(lambda match: f"{match.group(1)}{match.group(2)}{MASK}"
                             if match.group(3) != MASK else match.group(0), text)


def split_http_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(uri without userinfo, user, password) of an http(s) tracking URI, both ``unquote``d;
    other URIs come back unchanged with (None, None)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri, None, None
    user, password, host = _split_netloc(parts.netloc)
    return (parts._replace(netloc=host).geturl(), unquote(user) if user else None,
            unquote(password) if password is not None else None)
