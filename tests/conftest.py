"""Shared fixtures. The embedded model loads once per test session (from the safetensors cache)."""
from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["LAB_GALLERY"] = "0"   # every test starts on an empty database; tests/test_gallery.py imports it itself
if os.environ.get("PYTEST_XDIST_WORKER"):   # `pytest -n 2`: one torch thread per worker, so two never fight
    os.environ["LAB_THREADS"] = "1"            # over the cores (subprocesses read it too)
    import torch
    torch.set_num_threads(1)

import pytest  # noqa: E402

from engine.settings import REPO_ROOT, Settings  # noqa: E402


@pytest.fixture(scope="session")
def model_cache_dir():
    # the cache `make setup` fills; tests reuse it (converting the GGUF once if it is missing)
    from engine.model_loading import resolve_model_dir
    cache = REPO_ROOT / "data" / "model-cache"
    resolve_model_dir("embedded", cache)
    return cache


@pytest.fixture(scope="session")
def host(model_cache_dir):
    from engine.model_host import ModelHost
    return ModelHost("embedded", model_cache_dir)


@pytest.fixture
def settings(tmp_path, model_cache_dir):
    # a fresh data dir per test, sharing the converted model through a symlink
    (tmp_path / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    return Settings(model="embedded", data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'lab.sqlite'}", threads=2)


@pytest.fixture
def lab(settings, host):
    from engine.api import Lab
    return Lab(settings=settings, host_factory=lambda: host)


# ---------- databases: SQLite, and PostgreSQL where a server is given ----------
PG_SKIP = ("PostgreSQL: LAB_TEST_PG_URL is not set; `.ci/run` sets it to a throwaway server "
           "(export LAB_TEST_PG_URL=$(bash .ci/postgres.sh))")


def fresh_postgres_database(admin_url: str):
    """A new empty database on the server of `admin_url`, dropped afterwards (a generator)."""
    import uuid

    from sqlalchemy import create_engine, make_url, text
    name = f"lab_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The lab's database URL, once per backend: an SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lab.sqlite'}"
        return
    admin = os.environ.get("LAB_TEST_PG_URL")
    if not admin:
        pytest.skip(PG_SKIP)
    yield from fresh_postgres_database(admin)


@pytest.fixture
def cli_db_url(tmp_path):
    """The database the CLI fixtures use (test files that run on both backends override it with db_url)."""
    return f"sqlite:///{tmp_path / 'lab.sqlite'}"


@pytest.fixture
def cli(tmp_path, model_cache_dir, cli_db_url):
    """`python -m engine ARGS` in a subprocess on a fresh data dir, as a user scripts it."""
    (tmp_path / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    env = {**os.environ, "LAB_DATA_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "LAB_DB_URL": cli_db_url}

    def run(*args, **extra_env):
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, env={**env, **extra_env}, timeout=600)
    return run


@pytest.fixture
def engine_cli(tmp_path, model_cache_dir, host, monkeypatch, cli_db_url):
    """`python -m engine ARGS` run in this process, on a fresh data dir, with the session's model host: the
    same parser, dispatch, JSON and exit codes as the subprocess `cli`, without paying a fresh interpreter,
    torch import and model load per call (seconds each). `cli` keeps the real process for the few tests of it."""
    import contextlib
    import io

    from engine import api, cli as engine_cli_module
    (tmp_path / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAB_DB_URL", cli_db_url)
    monkeypatch.setattr(api, "_make_host", lambda settings: host)

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = engine_cli_module.main(list(args))
        return subprocess.CompletedProcess(["python", "-m", "engine", *args], code, out.getvalue(), err.getvalue())
    return run


TINY = {"steps": 3, "batch_size": 4, "n_train": 8, "n_heldout": 4, "eval_samples": 1, "max_new_tokens": 12,
        "eval_every": 2, "teacher_samples": 1}


def same_numbers(a: dict, b: dict, rel: float = 1e-5) -> bool:
    """Two runs' metrics agree: the same keys, floats to `rel` (a soft prompt's training on 2 CPU threads is
    not bit-reproducible: three runs of one request differ at 1e-7), everything else exactly."""
    import math
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=rel) if isinstance(a[k], float) and isinstance(b[k], float) else a[k] == b[k]
        for k in a)


# The longest files first: `make test` hands whole files to two workers in this order, so the long real runs
# start at once and the short files fill in around them (otherwise one worker ends minutes after the other).
LONGEST_FIRST = ("test_table1.py", "test_second_model.py", "test_parameter_reward.py", "test_demonstrations.py",
                 "test_reward_from_data.py", "test_chain.py", "test_browser.py", "test_parameter_to_prompt.py",
                 "test_queue_processes.py", "test_cli.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: each file keeps its order
