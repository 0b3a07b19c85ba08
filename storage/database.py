"""Opening a database: the engine for a URL, SQLite's journal for the filesystem it sits on, and the schema
brought up to date by the migrations in storage/migrations (Alembic) at start-up.

SQLite (the default) runs in WAL mode, so the page's reads never block a run's writes — but WAL needs
shared memory on a local disk: on a network or FUSE mount (a Space's persistent storage can be one) the
lab falls back to the rollback journal and says so in the log. PostgreSQL: `postgresql+psycopg://…`.
"""
from __future__ import annotations

import functools
import json
import logging
import math
import threading
from pathlib import Path

from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine

log = logging.getLogger("triangle_lab.storage")
_MIGRATING = threading.Lock()   # Alembic's command API keeps module-level state: one migration at a time

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# filesystems where SQLite's WAL (mmap'd shared memory, POSIX locks across hosts) is not safe
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs",
                       "fuse", "fuseblk", "davfs", "sshfs", "s3fs", "gcsfuse", "beegfs", "gpfs")


# ---------- SQLite's journal ----------
def filesystem_type(path: Path, mounts: str | None = None) -> str:
    """The type of the filesystem holding `path`, from /proc/mounts (the longest mount point above it);
    "" where that cannot be read (not Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    path, best, kind = str(Path(path).resolve()), "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def is_network_filesystem(kind: str) -> bool:
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse.")


def sqlite_journal_mode(db_file: Path, mounts: str | None = None) -> str:
    """"wal" on a local filesystem, "delete" (the rollback journal) on a network or FUSE mount."""
    kind = filesystem_type(db_file.parent, mounts)
    if is_network_filesystem(kind):
        log.warning("SQLite database %s is on a %s mount: WAL needs a local disk, using the rollback journal "
                    "(readers may wait for a run's writes; PostgreSQL via LAB_DB_URL scales better)", db_file, kind)
        return "delete"
    return "wal"


def _sqlite_pragmas(journal: str):
    def on_connect(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA journal_mode={journal}")
        cur.execute("PRAGMA busy_timeout=10000")   # a writer waits for another process's write, up to 10 s
        cur.close()
    return on_connect


# ---------- engines ----------
def _finite(obj):
    """JSON with NaN/inf as null: PostgreSQL's json type refuses the bare NaN Python writes."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_for_postgres(obj) -> str:
    try:
        return json.dumps(obj, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True, json_serializer=_json_for_postgres)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str) -> Engine:
    from sqlalchemy.pool import StaticPool
    if url in ("sqlite://", "sqlite:///:memory:"):   # in-memory: one shared connection, every session sees it
        engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
        journal = "memory"
    else:
        db_file = Path(url.removeprefix("sqlite:///"))
        db_file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        journal = sqlite_journal_mode(db_file)
    event.listen(engine, "connect", _sqlite_pragmas(journal))
    return engine


def journal_mode(engine: Engine) -> str | None:
    """The journal mode an SQLite database runs in (None for other databases)."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA journal_mode").scalar()


# ---------- schema ----------
def alembic_config(connection=None):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to `revision` (start-up: head). An empty database gets the current tables at once
    (stamped head); a database of an earlier release runs the migrations after its revision; one from before
    the migrations existed (no alembic_version table) runs them all — the first adopts existing tables."""
    with _MIGRATING:
        return _migrate(engine, revision)


def _migrate(engine: Engine, revision: str) -> str | None:
    from alembic import command
    before = current_revision(engine)
    if revision == "head" and before == head_revision():
        return before
    if revision == "head" and before is None and not inspect(engine).has_table("runs"):
        from storage.models import Base
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
            command.stamp(alembic_config(conn), "head")
        return head_revision()
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    after = current_revision(engine)
    if after != before:
        log.info("database schema migrated %s -> %s", before or "(before migrations)", after)
    return after


def schema_differences(engine: Engine) -> list:
    """What the database's schema lacks or has beyond the models (empty after `migrate`): autogenerate's diff."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.models import Base
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return compare_metadata(ctx, Base.metadata)

