"""services/mlflow/entrypoint.py without a server: what it refuses and what it writes."""

from __future__ import annotations

import configparser
import importlib.util
import stat

import pytest
from deploy_support import MLFLOW_ENTRYPOINT
from local_services import free_ports

STRONG = "a-Strong:pass\\word-42"


@pytest.fixture(scope="module")
def entrypoint():
    spec = importlib.util.spec_from_file_location("mlflow_entrypoint", MLFLOW_ENTRYPOINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Only the entrypoint's own variables, pointing at nothing that answers."""
    for name in list(__import__("os").environ):
        if name.startswith(("MLFLOW_", "PG")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MLFLOW_DB_HOST", "127.0.0.1")
    monkeypatch.setenv("MLFLOW_DB_PORT", str(free_ports(1)[0]))
    monkeypatch.setenv("MLFLOW_DB_WAIT_SECONDS", "1")
    return monkeypatch


@pytest.mark.parametrize("password", [None, "", "password1234", "admin", "password",
                                      "PASSWORD", "short-pw", " " * 12, "\t \n" * 5,
                                      "a" * 12, "%" * 40, "password12345", "Password2026",
                                      "  administrator  ", "123456789012", "qwertyuiop12"])
def test_refuses_a_missing_default_or_weak_admin_password(entrypoint, clean_env, capsys,
                                                          password):
    if password is not None:
        clean_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", password)
    assert entrypoint.main() == 2
    err = capsys.readouterr().err
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in err and "error:" in err
    if password and any(c.isdigit() or c in "%-" for c in password):  # never echoed (the
        assert password not in err                                    # others are words)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("password", [STRONG, "correct horse battery", "xk3-Lq9-Zt2-Wp7",
                                      "abababababab", "1234567890123x"])
def test_accepts_long_uncommon_passwords(entrypoint, password):
    assert entrypoint.check_password("MLFLOW_AUTH_ADMIN_PASSWORD", "admin", password) == password


def test_the_entrypoint_scrubber_is_nnchains(entrypoint):
    """The image has no nnchain, so the entrypoint keeps a copy of nnchain/credentials.py:
    the same text, and the same answers."""
    from pathlib import Path

    from nnchain import credentials

    source = Path(credentials.__file__).read_text()
    copy = Path(MLFLOW_ENTRYPOINT).read_text()
    body = source[source.index('MASK = "***"'):].rstrip()
    assert body in copy
    for uri in ("postgresql://u:p%40w@h:5432/db?password=x&sslmode=require&sslpassword=y",
                "http://user:pw@h:5000", "sqlite:////tmp/a.db", "https://h/x?token=abc&a",
                "postgresql+psycopg://u@h/db?PassWord=z", "mysql://u:a@b@h/db"):
        assert entrypoint.scrub(uri) == credentials.scrub(uri)
        assert entrypoint.has_secret(uri) == credentials.has_secret(uri)


def test_the_store_uri_stays_off_the_servers_command_line(entrypoint):
    uri = "postgresql+psycopg://u:hidden-db-pw@db:5432/mlflow?sslpassword=hidden-ssl"
    config = {"backend_uri": uri, "artifacts": "/artifacts", "host": "127.0.0.1", "port": 5000}
    command = entrypoint.server_command(config)
    assert "hidden" not in " ".join(command) and "--backend-store-uri" not in command
    assert entrypoint.server_exec_env(config, {})["MLFLOW_BACKEND_STORE_URI"] == uri


def test_the_user_name_is_no_password(entrypoint, clean_env):
    clean_env.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "administrator1")
    clean_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "administrator1")
    assert entrypoint.main() == 2


def test_secrets_come_from_files(entrypoint, clean_env, tmp_path):
    secret = tmp_path / "admin.secret"
    secret.write_text(STRONG + "\n")
    clean_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", str(secret))
    config = entrypoint.read_config(dict(__import__("os").environ))
    assert config["admin_password"] == STRONG
    clean_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(entrypoint.SetupError, match="must name a readable file"):
        entrypoint.read_config(dict(__import__("os").environ))


def test_private_files_and_a_clean_environment(entrypoint, tmp_path):
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": STRONG, "MLFLOW_DB_PASSWORD": "db:pa\\ss",
           "MLFLOW_DB_USER": "mlflow_role", "MLFLOW_SERVICE_USERNAME": "nnchain",
           "MLFLOW_SERVICE_PASSWORD": "service-password-1", "MLFLOW_CONFIG_DIR":
           str(tmp_path / "config"), "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow:*", "HOME": "/x"}
    config = entrypoint.read_config(env)
    assert "://mlflow_role@postgres:5432/mlflow" in config["backend_uri"]
    assert config["auth_uri"] == "postgresql+psycopg://mlflow_role@postgres:5432/mlflow_auth"
    ini, pgpass = entrypoint.write_private_files(config)
    for path in (ini, pgpass):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ini.parent.stat().st_mode) == 0o700
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read(ini)
    assert dict(parsed["mlflow"]) == {
        "default_permission": "READ", "database_uri": config["auth_uri"],
        "admin_username": "admin", "admin_password": STRONG,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth"}
    assert pgpass.read_text() == "postgres:5432:*:mlflow_role:db\\:pa\\\\ss\n"
    child = entrypoint.server_env(env, ini, pgpass, "csrf-key")
    assert child["MLFLOW_AUTH_CONFIG_PATH"] == str(ini) and child["PGPASSFILE"] == str(pgpass)
    assert child["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert child["MLFLOW_SERVER_ALLOWED_HOSTS"] == "mlflow:*"
    for secret in (STRONG, "db:pa\\ss", "service-password-1"):
        assert secret not in "\n".join(f"{k}={v}" for k, v in child.items())
    command = entrypoint.server_command(config)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--workers") + 1] == "4" and "--serve-artifacts" in command
    assert command[command.index("--host") + 1] == "127.0.0.1"  # the image sets 0.0.0.0
    assert not any(secret in " ".join(command) for secret in (STRONG, "db:pa\\ss"))


@pytest.mark.parametrize(("value", "workers"), [("2", 2), ("64", 64), ("0", None),
                                               ("65", None), ("two", None), ("-1", None)])
def test_the_number_of_server_workers(entrypoint, value, workers):
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": STRONG, "MLFLOW_WORKERS": value}
    if workers is None:
        with pytest.raises(entrypoint.SetupError, match="MLFLOW_WORKERS must be a whole"):
            entrypoint.read_config(env)
        return
    command = entrypoint.server_command(entrypoint.read_config(env))
    assert command[command.index("--workers") + 1] == str(workers)


def test_gives_up_on_an_absent_database_with_one_line(entrypoint, clean_env, capsys):
    clean_env.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", STRONG)
    clean_env.setenv("MLFLOW_DB_PASSWORD", "the-db-password")
    assert entrypoint.main() == 3
    err = capsys.readouterr().err
    assert "did not answer within 1 s" in err and "the-db-password" not in err


@pytest.mark.parametrize(("value", "role"), [("", ""), ("nnchain", "nnchain"),
                                             ("nnd_1a2b_nnchain", "nnd_1a2b_nnchain"),
                                             ('x"; DROP TABLE runs; --', None),
                                             ("1abc", None), ("a" * 64, None)])
def test_the_direct_writer_is_a_plain_role_name(entrypoint, value, role):
    """It goes into GRANT statements as a quoted identifier: only plain names pass."""
    env = {"MLFLOW_AUTH_ADMIN_PASSWORD": STRONG, "MLFLOW_DIRECT_WRITER": value}
    if role is None:
        with pytest.raises(entrypoint.SetupError, match="MLFLOW_DIRECT_WRITER must be a role"):
            entrypoint.read_config(env)
        return
    assert entrypoint.read_config(env)["direct_writer"] == role
