#!/usr/bin/env python3
"""Start the MLflow tracking server of an nnchain deployment: PostgreSQL, basic auth, artifacts.

In order: read the settings (secrets from the environment or from ``*_FILE`` secret
files), refuse a missing or well-known admin password, wait for PostgreSQL, run
``mlflow db upgrade`` on the tracking database and the auth app's migrations on its
database explicitly, create or update the service user the Ray head records sweeps as,
write ``basic_auth.ini`` and a libpq password file into a private directory, then
replace this process with ``mlflow server --app-name basic-auth``.

Passwords reach no command line, no log line and not the server's environment: the
database URIs carry no password (libpq reads it from the ``PGPASSFILE`` written here,
mode 0600), the admin password sits only in ``basic_auth.ini`` (mode 0600) and the
service user's goes to its helper on stdin.

The same script runs in the image and as a plain process (tests, a bare-metal host):

    MLFLOW_DB_HOST=127.0.0.1 MLFLOW_DB_USER=postgres MLFLOW_DB_NAME=mlflow \\
    MLFLOW_AUTH_DB_NAME=mlflow_auth MLFLOW_AUTH_ADMIN_PASSWORD_FILE=./admin.secret \\
    MLFLOW_ARTIFACTS_DESTINATION=/tmp/artifacts MLFLOW_PORT=5001 \\
    python services/mlflow/entrypoint.py

Settings, from the environment; a secret ``X`` may instead come as ``X_FILE``, the path of
a file holding it (Docker and Kubernetes secrets):

- ``MLFLOW_DB_HOST`` (postgres), ``MLFLOW_DB_PORT`` (5432), ``MLFLOW_DB_USER`` (mlflow),
  ``MLFLOW_DB_PASSWORD`` (secret; unset for trust or peer authentication),
  ``MLFLOW_DB_NAME`` (mlflow), ``MLFLOW_AUTH_DB_NAME`` (mlflow_auth): the two databases.
- ``MLFLOW_BACKEND_STORE_URI``, ``MLFLOW_AUTH_DATABASE_URI`` (secrets): whole SQLAlchemy
  URIs instead of the parts above (a managed database; a password in them reaches the
  server through its environment, but shows in ``mlflow db upgrade``'s command line).
- ``MLFLOW_AUTH_ADMIN_USERNAME`` (admin), ``MLFLOW_AUTH_ADMIN_PASSWORD`` (secret,
  required): the admin created on first start; unset, empty, a known default
  (``password1234``, ``admin``, ``password``, ... also with digits after it), white space
  only, one character repeated, a run of digits, the user name or shorter than 12
  characters is refused. Later starts do not change an existing admin's password.
- ``MLFLOW_SERVICE_USERNAME`` (unset: none), ``MLFLOW_SERVICE_PASSWORD`` (secret): a
  non-admin user created, or its password set, at every start (the Ray head's identity).
- ``MLFLOW_AUTH_DEFAULT_PERMISSION`` (READ): what a user may do on others' experiments.
- ``MLFLOW_FLASK_SERVER_SECRET_KEY`` (secret; unset: random per start): signs the UI's
  CSRF tokens.
- ``MLFLOW_WORKERS`` (4, MLflow's own default): the server's uvicorn worker processes.
  nnchain's writer sends several runs' batches at once; each worker writes one, so
  recording scales with the workers up to the host's cores (benchmarks/README.md).
- ``MLFLOW_DIRECT_WRITER`` (unset: none): a PostgreSQL role (the deployment's ``nnchain``)
  granted, at every start after the upgrade, CONNECT and SELECT, INSERT, UPDATE on the
  tracking database's tables, so that sweep drivers holding its password write runs and
  values there directly (``NNCHAIN_TRACKING_STORE_URL``, ``nnchain/tracking/direct.py``)
  instead of through this server. The experiment and the parent run still go through
  the server, so its permissions still decide who records into an experiment.
- ``MLFLOW_HOST`` (127.0.0.1; the image sets 0.0.0.0), ``MLFLOW_PORT`` (5000),
  ``MLFLOW_ARTIFACTS_DESTINATION`` (/artifacts), ``MLFLOW_CONFIG_DIR`` (a new private temp
  dir), ``MLFLOW_DB_WAIT_SECONDS`` (60). ``MLFLOW_SERVER_ALLOWED_HOSTS`` passes through.

Exit codes: 2 a setting is missing or refused, 3 PostgreSQL did not answer in time,
4 a schema upgrade or the service user failed; otherwise the server's own.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

# MLflow's old shipped default and other passwords that must never guard a shared server;
# compared without case and without trailing digits ("Password12345" is "password")
WEAK_PASSWORDS = frozenset({
    "password1234", "admin", "password", "mlflow", "changeme", "secret", "passw0rd",
    "p@ssw0rd", "administrator", "root", "letmein", "welcome", "qwerty", "qwertyuiop",
    "iloveyou", "default", "test", "abc", "abcdef", "abc123", "123456789012", "1234567890",
    "mlflowadmin", "adminadmin", "nnchain", "postgres"})
MIN_PASSWORD_LENGTH = 12  # MLflow's own rule for user passwords
DEFAULT_WORKERS = 4  # mlflow server's own default, when --workers is not given
MAX_WORKERS = 64
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
SECRET_NAMES = ("MLFLOW_DB_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_SERVICE_PASSWORD",
                "MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI",
                "MLFLOW_FLASK_SERVER_SECRET_KEY")
# Creates the service user, or sets its password; reads {uri, username, password} on stdin.
SERVICE_USER_SCRIPT = """
import json, sys
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore
request = json.load(sys.stdin)
store = SqlAlchemyStore()
store.init_db(request["uri"])
if store.has_user(request["username"]):
    store.update_user(request["username"], password=request["password"])
    print("updated the password of service user " + repr(request["username"]))
else:
    store.create_user(request["username"], request["password"], is_admin=False)
    print("created service user " + repr(request["username"]))
"""


# ---- a copy of nnchain/credentials.py (this image has no nnchain); a test keeps them equal
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
# ---- end of the copy of nnchain/credentials.py


class SetupError(Exception):
    """A refused setting or an unready dependency: one line and an exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def setting(env: dict[str, str], name: str, default: str | None = None) -> str | None:
    """``name`` from the environment, else from the file named by ``name_FILE``, else default."""
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SetupError(f"{name}_FILE must name a readable file, cannot read {path!r}: "
                             f"{exc.strerror}") from None
    return default


def is_common_password(password: str) -> bool:
    """Whether ``password`` is on the short list, ignoring case, spaces around it and
    trailing digits, or is a run of consecutive digits ("123456789012")."""
    plain = password.strip().lower()
    return (plain in WEAK_PASSWORDS or plain.rstrip("0123456789") in WEAK_PASSWORDS
            or plain in "01234567890123456789" or plain in "98765432109876543210")


def check_password(variable: str, username: str, password: str | None) -> str:
    """``password``, or SetupError when it is unset, white space, one character repeated,
    a known default or common password, the user name or too short."""
    if not password:
        raise SetupError(f"{variable} (or {variable}_FILE) must be set: the server refuses to "
                         f"start without a password for user {username!r}")
    if not password.strip():
        raise SetupError(f"{variable} must not be only white space; choose another one")
    if len(set(password)) == 1:
        raise SetupError(f"{variable} must not be one character repeated; choose another one")
    if is_common_password(password) or password == username:
        raise SetupError(f"{variable} must not be a default or well-known password (such as "
                         f"MLflow's old default) nor the user name; choose another one")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SetupError(f"{variable} must have at least {MIN_PASSWORD_LENGTH} characters, it "
                         f"has {len(password)}")
    return password


def _pg_uri(user: str, host: str, port: str, database: str) -> str:
    """A password-less PostgreSQL URI for MLflow's SQLAlchemy stores (psycopg 3 driver)."""
    return f"postgresql+psycopg://{quote(user, safe='')}@{host}:{port}/{quote(database, safe='')}"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def read_config(env: dict[str, str]) -> dict:
    """Every setting, checked."""
    username = env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
    password = check_password("MLFLOW_AUTH_ADMIN_PASSWORD", username,
                              setting(env, "MLFLOW_AUTH_ADMIN_PASSWORD"))
    service_user = env.get("MLFLOW_SERVICE_USERNAME") or ""
    service_password = None
    if service_user:
        if service_user == username:
            raise SetupError("MLFLOW_SERVICE_USERNAME must differ from the admin's name, both "
                             f"are {username!r}")
        service_password = check_password("MLFLOW_SERVICE_PASSWORD", service_user,
                                          setting(env, "MLFLOW_SERVICE_PASSWORD"))
    permission = (env.get("MLFLOW_AUTH_DEFAULT_PERMISSION") or "READ").upper()
    if permission not in PERMISSIONS:
        raise SetupError(f"MLFLOW_AUTH_DEFAULT_PERMISSION must be one of {', '.join(PERMISSIONS)},"
                         f" got {permission!r}")
    host = env.get("MLFLOW_DB_HOST") or "postgres"
    port = env.get("MLFLOW_DB_PORT") or "5432"
    user = env.get("MLFLOW_DB_USER") or "mlflow"
    backend = setting(env, "MLFLOW_BACKEND_STORE_URI") or _pg_uri(
        user, host, port, env.get("MLFLOW_DB_NAME") or "mlflow")
    auth_db = setting(env, "MLFLOW_AUTH_DATABASE_URI") or _pg_uri(
        user, host, port, env.get("MLFLOW_AUTH_DB_NAME") or "mlflow_auth")
    workers_text = (env.get("MLFLOW_WORKERS") or str(DEFAULT_WORKERS)).strip()
    if not workers_text.isdigit() or not 1 <= int(workers_text) <= MAX_WORKERS:
        raise SetupError(f"MLFLOW_WORKERS must be a whole number from 1 to {MAX_WORKERS}, got "
                         f"{workers_text!r}")
    try:
        wait = float(env.get("MLFLOW_DB_WAIT_SECONDS") or 60)
    except ValueError:
        raise SetupError("MLFLOW_DB_WAIT_SECONDS must be a number of seconds, got "
                         f"{env.get('MLFLOW_DB_WAIT_SECONDS')!r}") from None
    return {
        "admin_username": username, "admin_password": password,
        "service_username": service_user, "service_password": service_password,
        "default_permission": permission, "backend_uri": backend, "auth_uri": auth_db,
        "db_host": host, "db_port": port, "db_user": user,
        "db_password": setting(env, "MLFLOW_DB_PASSWORD"),
        "host": env.get("MLFLOW_HOST") or "127.0.0.1", "port": env.get("MLFLOW_PORT") or "5000",
        "artifacts": env.get("MLFLOW_ARTIFACTS_DESTINATION") or "/artifacts",
        "config_dir": env.get("MLFLOW_CONFIG_DIR") or "", "wait": wait,
        "workers": int(workers_text),
        "flask_secret": setting(env, "MLFLOW_FLASK_SERVER_SECRET_KEY") or "",
        "direct_writer": _role(env.get("MLFLOW_DIRECT_WRITER") or ""),
    }


def _role(name: str) -> str:
    """A PostgreSQL role name as granted to (letters, digits, ``_``; empty: none)."""
    if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise SetupError(f"MLFLOW_DIRECT_WRITER must be a role name (letters, digits, _), got "
                         f"{name!r}")
    return name


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (created 0600, never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def write_private_files(config: dict) -> tuple[Path, Path | None]:
    """``basic_auth.ini`` and, when a database password is set, a libpq password file."""
    directory = Path(config["config_dir"] or tempfile.mkdtemp(prefix="mlflow-auth-"))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, stat.S_IRWXU)
    parser = configparser.ConfigParser(interpolation=None)
    parser["mlflow"] = {
        "default_permission": config["default_permission"],
        "database_uri": config["auth_uri"],
        "admin_username": config["admin_username"],
        "admin_password": config["admin_password"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    text = io.StringIO()
    parser.write(text)
    ini = directory / "basic_auth.ini"
    _private_file(ini, text.getvalue())
    pgpass = None
    if config["db_password"]:
        pgpass = directory / "pgpass"
        fields = [config["db_host"], config["db_port"], "*", config["db_user"],
                  config["db_password"]]
        _private_file(pgpass, ":".join(_pgpass_field(f) for f in fields) + "\n")
    return ini, pgpass


def server_env(env: dict[str, str], ini: Path, pgpass: Path | None,
               flask_secret: str) -> dict[str, str]:
    """The environment of the helpers and the server: no password in it (only the key MLflow
    signs the UI's CSRF tokens with, which it reads from there)."""
    dropped = {*SECRET_NAMES, *(f"{name}_FILE" for name in SECRET_NAMES),
               "MLFLOW_AUTH_ADMIN_USERNAME", "PGPASSWORD"}
    clean = {k: v for k, v in env.items() if k not in dropped}
    clean.update({"MLFLOW_AUTH_CONFIG_PATH": str(ini),
                  "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                  "MLFLOW_DISABLE_TELEMETRY": "true",
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": flask_secret})
    if pgpass is not None:
        clean["PGPASSFILE"] = str(pgpass)
    return clean


@contextmanager
def database(uri: str, env: dict[str, str]):
    """An engine on ``uri`` that reads its password from ``env``'s ``PGPASSFILE``."""
    import sqlalchemy

    previous = os.environ.get("PGPASSFILE")
    if "PGPASSFILE" in env:
        os.environ["PGPASSFILE"] = env["PGPASSFILE"]
    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 3})
    try:
        yield engine
    finally:
        engine.dispose()
        if previous is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = previous


def wait_for_database(uri: str, env: dict[str, str], seconds: float) -> None:
    """Connect until PostgreSQL answers (it may still be starting), at most ``seconds``."""
    import sqlalchemy

    deadline = time.monotonic() + seconds
    with database(uri, env) as engine:
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(sqlalchemy.text("SELECT 1"))
                return
            except sqlalchemy.exc.OperationalError as exc:
                last = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if time.monotonic() > deadline:
                raise SetupError(f"PostgreSQL at {scrub(uri)} did not answer within "
                                 f"{seconds:g} s: {last}", code=3)
            time.sleep(1.0)


def grant_direct_writer(config: dict, env: dict[str, str]) -> None:
    """``MLFLOW_DIRECT_WRITER`` may read and write MLflow's tables (never delete from them
    or change them), granted by their owner at every start: an upgrade may add tables."""
    role = config["direct_writer"]
    if not role:
        return
    import sqlalchemy

    statements = ['GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
                  'GRANT USAGE ON SCHEMA public TO "{role}"',
                  'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO "{role}"']
    log(f"granting role {role!r} direct writes into {scrub(config['backend_uri'])}")
    with database(config["backend_uri"], env) as engine:
        try:
            with engine.begin() as connection:
                name = connection.execute(sqlalchemy.text("SELECT current_database()")).scalar()
                for statement in statements:
                    connection.execute(sqlalchemy.text(
                        statement.format(database=name.replace('"', '""'), role=role)))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise SetupError(f"granting MLFLOW_DIRECT_WRITER {role!r} failed: "
                             f"{scrub_text(reason[0]) if reason else type(exc).__name__}",
                             code=4) from None


def _run(label: str, command: list[str], env: dict[str, str], config: dict,
         stdin: str | None = None) -> None:
    done = subprocess.run(command, env=env, input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    output = done.stdout
    for secret in (config["admin_password"], config["service_password"], config["db_password"]):
        if secret:
            output = output.replace(secret, "***")
    sys.stderr.write(output)
    if done.returncode != 0:
        raise SetupError(f"{label} failed (exit {done.returncode})", code=4)


def upgrade_schemas(config: dict, env: dict[str, str]) -> None:
    """``mlflow db upgrade`` on the tracking database, the auth app's migrations on its own."""
    log(f"mlflow db upgrade {scrub(config['backend_uri'])}")
    _run("the tracking schema upgrade", [sys.executable, "-m", "mlflow", "db", "upgrade",
                                         config["backend_uri"]], env, config)
    log(f"upgrading the auth database {scrub(config['auth_uri'])}")
    _run("the auth schema upgrade", [sys.executable, "-m", "mlflow.server.auth", "db",
                                     "upgrade", "--url", config["auth_uri"]], env, config)


def ensure_service_user(config: dict, env: dict[str, str]) -> None:
    """Create the service user, or set its password to the configured one."""
    if not config["service_username"]:
        return
    request = json.dumps({"uri": config["auth_uri"], "username": config["service_username"],
                          "password": config["service_password"]})
    _run("the service user", [sys.executable, "-c", SERVICE_USER_SCRIPT], env, config,
         stdin=request)


def server_command(config: dict) -> list[str]:
    """The server's command line; the store's URI goes in its environment (``server_exec_env``),
    which, unlike a command line, other users of the host cannot read."""
    return [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
            "--artifacts-destination", config["artifacts"], "--serve-artifacts",
            "--host", config["host"], "--port", str(config["port"]), "--workers",
            str(config.get("workers", DEFAULT_WORKERS))]


def server_exec_env(config: dict, child_env: dict[str, str]) -> dict[str, str]:
    return {**child_env, "MLFLOW_BACKEND_STORE_URI": config["backend_uri"]}


def log(message: str) -> None:
    print(f"[mlflow-entrypoint] {message}", file=sys.stderr, flush=True)


def main() -> int:
    env = dict(os.environ)
    try:
        config = read_config(env)
        if not config["flask_secret"]:
            log("MLFLOW_FLASK_SERVER_SECRET_KEY is not set: a random key is used, UI sessions "
                "end when the server restarts")
            config["flask_secret"] = secrets.token_urlsafe(32)
        ini, pgpass = write_private_files(config)
        child_env = server_env(env, ini, pgpass, config["flask_secret"])
        log(f"waiting for PostgreSQL at {scrub(config['backend_uri'])}")
        wait_for_database(config["backend_uri"], child_env, config["wait"])
        upgrade_schemas(config, child_env)
        grant_direct_writer(config, child_env)
        ensure_service_user(config, child_env)
        Path(config["artifacts"]).mkdir(parents=True, exist_ok=True)
    except SetupError as exc:
        log(f"error: {exc}")
        return exc.code
    log(f"starting the tracking server on {config['host']}:{config['port']} (basic auth, "
        f"admin {config['admin_username']!r}, artifacts in {config['artifacts']}, "
        f"{config['workers']} workers)")
    os.execve(sys.executable, server_command(config), server_exec_env(config, child_env))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
