"""The ledger's tables: what a sweep holds, and the state of each of its trials.

The ledger is the source of truth for what is pending, running, finished or failed;
MLflow is the record users browse. Tables are prefixed ``nnchain_`` so that they can
live in the same PostgreSQL database as an MLflow store.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from nnchain.ledger.states import (  # noqa: F401 - re-exported, the names' old home
    ENDED,
    FAILED,
    FINISHED,
    KILLED,
    PENDING,
    PRUNED,
    RUNNING,
    SWEEP_FAILED,
    SWEEP_FINISHED,
    SWEEP_RUNNING,
    SWEEP_STOPPED,
    TRIAL_STATES,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# Columns added later are nullable and added on open (``store.add_missing_columns``): an
# older nnchain still reads a newer ledger, so the version only changes when it cannot.
SCHEMA_VERSION = "1"


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Key-value facts about the ledger itself; ``schema_version`` guards its tables."""

    __tablename__ = "nnchain_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class Sweep(Base):
    __tablename__ = "nnchain_sweeps"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    experiment: Mapped[str] = mapped_column(String(100))
    experiment_id: Mapped[str] = mapped_column(String(64), default="")
    parent_run_id: Mapped[str] = mapped_column(String(64), default="")
    tracking_uri: Mapped[str] = mapped_column(Text, default="")  # redacted
    spec_text: Mapped[str] = mapped_column(Text, default="")
    fingerprint: Mapped[str] = mapped_column(String(64))
    metric_name: Mapped[str] = mapped_column(String(250))
    metric_goal: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=SWEEP_RUNNING)
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    trial_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    driver: Mapped[str] = mapped_column(String(200), default="")  # host:pid of the driver
    # The driver's process (``nnchain.runner.identity``), checked on its host by the reaper.
    # Nullable: added to ledgers an older nnchain made (``store.add_missing_columns``).
    driver_host: Mapped[str | None] = mapped_column(String(200), nullable=True)
    driver_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    driver_started: Mapped[float | None] = mapped_column(Float, nullable=True)  # s after boot
    driver_space: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Trial(Base):
    __tablename__ = "nnchain_trials"
    __table_args__ = (UniqueConstraint("sweep_id", "key", name="nnchain_trial_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("nnchain_sweeps.id", ondelete="CASCADE"),
                                          index=True)
    key: Mapped[str] = mapped_column(String(32))
    index: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict] = mapped_column(JSON)
    overrides: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[str] = mapped_column(String(64), default="")
    artifact_uri: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    last_step: Mapped[int] = mapped_column(Integer, default=-1)  # highest step recorded
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    metric: Mapped[float | None] = mapped_column(Float, nullable=True)  # the sweep's metric, last
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # key -> {last, min, max}
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    worker: Mapped[str] = mapped_column(String(200), default="")  # host:pid of the attempt


class Checkpoint(Base):
    """The latest checkpoint of a trial: weights, optimizer and rng state as ``.npz`` bytes."""

    __tablename__ = "nnchain_checkpoints"

    trial_id: Mapped[int] = mapped_column(ForeignKey("nnchain_trials.id", ondelete="CASCADE"),
                                          primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)  # epochs completed when saved
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Decision(Base):
    """One early-stopping decision on a trial (``nnchain.sweep.pruning``): kept, so that a
    resumed sweep never decides again what it decided once. Added to older ledgers as a
    new table (the upgrade is additive)."""

    __tablename__ = "nnchain_decisions"
    __table_args__ = (UniqueConstraint("trial_id", "epoch", name="nnchain_decision_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("nnchain_sweeps.id", ondelete="CASCADE"),
                                          index=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("nnchain_trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)  # epochs run when decided
    bracket: Mapped[int] = mapped_column(Integer, default=0)
    rung: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: NaN
    cutoff: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: none yet
    stop: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
