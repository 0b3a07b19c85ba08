"""Alembic's environment for the lab: migrations run on the connection `storage.database.migrate` hands in
(at start-up), or on LAB_DB_URL for the alembic command line (`alembic -c storage/alembic.ini upgrade head`)."""
from alembic import context

from storage.models import Base

config = context.config


def run_migrations(connection) -> None:
    # no batch mode: its SQLite table copy would drop `runs` under its cascading foreign keys
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from engine.settings import load_settings
    from storage.database import make_engine
    with make_engine(load_settings().db_url).begin() as conn:
        run_migrations(conn)
