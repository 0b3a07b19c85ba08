"""The lab's tables: runs, their metric points, their samples and the artifacts they produce."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    edge: Mapped[str] = mapped_column(String(40))            # e.g. "prompt->parameter"
    method: Mapped[str] = mapped_column(String(40))
    scenario: Mapped[str] = mapped_column(String(200))
    # the scenario's data, stored once in `scenarios` by the hash of its content (config keeps the hash too)
    scenario_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    model: Mapped[str | None] = mapped_column(String(300), default=None, index=True)  # set when it starts
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    stage: Mapped[str] = mapped_column(String(200), default="")
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)    # final numbers
    error: Mapped[str | None] = mapped_column(Text, default=None)
    owner: Mapped[str | None] = mapped_column(String(80), default=None)  # "pid@host" of the process running it
    # who queued it (engine/visitors.py): "v:" + a token's hash or "hf:" + an account; None on older rows
    visitor: Mapped[str | None] = mapped_column(String(120), default=None, index=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)  # its runner is alive
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    parent_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)  # a chain's hops point to it
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)

    points: Mapped[list[MetricPoint]] = relationship(back_populates="run", cascade="all, delete-orphan")
    samples: Mapped[list[SampleRow]] = relationship(back_populates="run", cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="run", cascade="all, delete-orphan")

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ScenarioData(Base):
    """A scenario's whole content, once, by its SHA-256: runs on the same scenario share one row."""
    __tablename__ = "scenarios"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer)           # bytes of its canonical JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MetricPoint(Base):
    """One value of one curve: (run, name, step) -> value, e.g. ("loss", 10) -> 0.42."""
    __tablename__ = "metric_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    run: Mapped[Run] = relationship(back_populates="points")


class SampleRow(Base):
    """One generation of one policy for one held-out input, with its reward."""
    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    policy: Mapped[str] = mapped_column(String(60))     # "base", "teacher", "student", ...
    input: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float, default=None)
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    extra: Mapped[dict] = mapped_column(JSON, default=dict)  # edge-specific numbers, e.g. a derived reward
    run: Mapped[Run] = relationship(back_populates="samples")


class Artifact(Base):
    """What a run leaves at its target vertex: an adapter, a prompt, a soft prompt, a reward spec."""
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(30))       # "adapter", "prompt", "soft_prompt", "reward"
    vertex: Mapped[str] = mapped_column(String(20))     # "parameter", "prompt", "reward"
    path: Mapped[str | None] = mapped_column(Text, default=None)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    run: Mapped[Run] = relationship(back_populates="artifacts")
