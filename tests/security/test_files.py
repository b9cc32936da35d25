"""Stores, ledgers and locks: never opened through a planted symbolic link; new ones
private (files 0600 in 0700 folders nnchain makes); Ray's default token file 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nnchain.errors import SpecError, StoreError

TRAIN_SPEC = "data: {name: xor, n_samples: 32}\nmodel: {hidden: [2]}\ntrain: {epochs: 1}\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def nnchain(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnchain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("planted", ["mlflow.db.lock", "mlflow.db", "mlflow.db-wal"])
def test_a_planted_symlink_is_refused_and_nothing_is_made_through_it(tmp_path, planted):
    runs = tmp_path / "nnchain-runs"
    runs.mkdir()
    target = tmp_path / "elsewhere" / "victim"
    target.parent.mkdir()
    (runs / planted).symlink_to(target)
    (tmp_path / "t.yaml").write_text(TRAIN_SPEC)
    done = nnchain("train", "t.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "symbolic link" in done.stderr
    assert not target.exists() and sorted(p.name for p in runs.iterdir()) == [planted]


def test_the_lock_itself_is_opened_without_following_links(tmp_path):
    from nnchain.tracking.store import creation_lock, open_private

    (tmp_path / "mlflow.db.lock").symlink_to(tmp_path / "victim")
    with pytest.raises(StoreError, match="symbolic link"):
        with creation_lock(f"sqlite:///{tmp_path / 'mlflow.db'}"):
            pass
    with pytest.raises(StoreError, match="symbolic link"):
        open_private(tmp_path / "mlflow.db.lock")
    assert not (tmp_path / "victim").exists()


def test_a_symlinked_ledger_is_refused(tmp_path):
    from nnchain.ledger.store import make_engine

    (tmp_path / "ledger.db").symlink_to(tmp_path / "victim")
    with pytest.raises(SpecError, match="--ledger-url: must not be a symbolic link"):
        make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert not (tmp_path / "victim").exists()


def test_new_stores_are_private(tmp_path):
    """``nnchain train`` into a new folder two levels deep: each folder nnchain makes is
    0700, the store and its lock 0600 (SQLite's -wal and -shm take the store's mode)."""
    (tmp_path / "t.yaml").write_text(TRAIN_SPEC)
    os.umask(0o022)
    done = nnchain("train", "t.yaml", "--tracking-uri", str(tmp_path / "deep" / "runs"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "deep") == mode(tmp_path / "deep" / "runs") == 0o700
    files = [p for p in (tmp_path / "deep" / "runs").iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"mlflow.db", "mlflow.db.lock"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_a_new_ledger_is_private(tmp_path):
    from nnchain.ledger.store import open_ledger

    open_ledger(f"sqlite:///{tmp_path / 'new' / 'ledger.db'}").dispose()
    assert mode(tmp_path / "new") == 0o700
    for path in (tmp_path / "new").iterdir():
        assert mode(path) == 0o600, path


def test_rays_default_token_file_is_made_private(tmp_path, monkeypatch):
    from nnchain.runner.cluster import private_token_file

    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    made = private_token_file(tmp_path)
    assert made == tmp_path / ".ray" / "auth_token"
    assert mode(made) == 0o600 and mode(made.parent) == 0o700
    assert len(made.read_text()) == 64 and int(made.read_text(), 16) >= 0
    made.chmod(0o644)  # as Ray 2.60 writes it
    token = made.read_text()
    assert private_token_file(tmp_path) == made and mode(made) == 0o600
    assert made.read_text() == token  # kept, only narrowed
    monkeypatch.setenv("RAY_AUTH_TOKEN", "given")
    assert private_token_file(tmp_path / "other") is None


def test_make_secrets_writes_private_files(tmp_path):
    from deploy_support import SERVICES

    copy = tmp_path / "services"
    (copy / "secrets").mkdir(parents=True)
    script = copy / "make-secrets.sh"
    script.write_text((SERVICES / "make-secrets.sh").read_text())
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    secrets = sorted((copy / "secrets").iterdir())
    assert len(secrets) == 7 and mode(copy / "secrets") == 0o700
    assert {p.name: mode(p) for p in secrets} == {p.name: 0o600 for p in secrets}
    assert all(len(p.read_text()) >= 32 for p in secrets)
    kept = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NNCHAIN_SECRETS_MODE": "0644"})
    assert kept.returncode == 0 and mode(secrets[0]) == 0o644  # the documented opt-out
    assert mode(copy / "secrets") == 0o700


def test_the_ray_image_keeps_a_private_copy_of_the_token(tmp_path):
    from deploy_support import SERVICES

    mounted = tmp_path / "ray_auth_token"
    mounted.write_text("the-cluster-token")
    mounted.chmod(0o644)  # as a bind-mounted secret may be
    done = subprocess.run(["sh", str(SERVICES / "ray" / "entrypoint.sh"), "sh", "-c",
                           'echo "$RAY_AUTH_TOKEN_PATH"'], capture_output=True, text=True,
                          env={**os.environ, "RAY_AUTH_TOKEN_PATH": str(mounted),
                               "TMPDIR": str(tmp_path)}, timeout=60)
    assert done.returncode == 0, done.stderr
    copy = Path(done.stdout.strip())
    assert copy != mounted and copy.read_text() == "the-cluster-token"
    assert mode(copy) == 0o600 and mode(copy.parent) == 0o700
