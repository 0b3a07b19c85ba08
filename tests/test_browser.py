"""The page in a real browser (Playwright driving Debian's Chromium): run a tiny configuration to the end."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from engine.settings import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, model_cache_dir):
    yield from _serve(tmp_path, model_cache_dir)


def _serve(tmp_path, model_cache_dir):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); browser test skipped")
    (tmp_path / "model-cache").symlink_to(model_cache_dir, target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "LAB_DATA_DIR": str(tmp_path), "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=REPO_ROOT, env=env,
                            stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the lab did not start: " + (tmp_path / "server.log").read_text()[-2000:])
    yield url
    workers = _children(proc.pid)   # the queue's worker process (LAB_WORKER_MODE=process, the default)
    assert bool(workers) == (env.get("LAB_WORKER") != "0"), f"worker processes: {workers}"
    proc.terminate()
    proc.wait(timeout=30)
    for _ in range(40):             # it dies with the page (PR_SET_PDEATHSIG), as a worker thread would
        if not any(os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid) for pid in workers):
            break
        time.sleep(0.25)
    else:
        pytest.fail(f"the worker process {workers} outlived the page")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _state(pid: int) -> str:
    try:
        return {"Z": "zombie"}.get(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0], "alive")
    except OSError:
        return "gone"


def _set(page, name: str, value) -> None:
    box = page.locator(f"#set-{name} input")
    box.fill(str(value))
    box.press("Tab")


def test_page_runs_a_tiny_distillation_and_shows_generations(server):
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(server)
        expect(page.get_by_text("prompt → parameter").first).to_be_visible(timeout=60_000)
        # every edge of the triangle and best-of-N can be picked, none is marked unbuilt
        for label in ("reward → parameter", "parameter → reward", "reward → prompt", "parameter → prompt",
                      "best-of-N (a reward at decoding time)"):
            expect(page.get_by_text(label, exact=True)).to_be_visible()
        expect(page.get_by_text("not built yet")).to_have_count(0)
        # the host says what it runs on, in the precision it chose at start-up (e.g. "CPU AVX2 · fp32")
        import torch
        expect(page.locator("#host-line")).to_contain_text(
            f"CPU {torch.backends.cpu.get_cpu_capability()} · ", timeout=60_000)
        expect(page.locator("#host-line")).to_contain_text("chat format: the model's chat template")
        # the quick preset fills in the method's short run; any field typed after it still wins
        page.locator("#preset-radio").get_by_text("quick", exact=True).click()
        expect(page.locator("#set-steps input")).to_have_value("64", timeout=10_000)
        expect(page.locator("#set-teacher_samples input")).to_have_value("1")
        for name, value in {"steps": 2, "batch_size": 4, "n_train": 8, "n_heldout": 3, "eval_samples": 1,
                            "max_new_tokens": 10, "teacher_samples": 1, "eval_every": 1}.items():
            _set(page, name, value)
        page.locator("#run-button").click()
        expect(page.locator("#convert-status")).to_contain_text("Submitted run", timeout=30_000)
        expect(page.locator("#run-progress")).to_contain_text("succeeded", timeout=300_000)
        table = page.locator("#generations")
        expect(table).to_contain_text("π0 + adapter (student)", timeout=30_000)
        expect(table).to_contain_text("π0 + prompt (teacher)")
        expect(page.locator("#final-metrics")).to_contain_text("kl_after")
        # bad input is refused with a message naming the field
        _set(page, "steps", 0)
        page.locator("#run-button").click()
        expect(page.locator("#convert-status")).to_contain_text("steps: 0 is out of range", timeout=30_000)
        browser.close()


@pytest.fixture
def seeded_server(tmp_path, model_cache_dir):
    """The lab over a data dir that already holds runs: an RL run with a curve, best-of-N, a reward on pirate."""
    from storage import Store
    st = Store(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    rl = st.create_run("reward->parameter", "rloo", "sentiment", {"method_config": {"beta": 0.05}})
    st.add_points(rl, 0, {"reward": 0.2, "kl_to_base_seq": 0.0})
    st.add_points(rl, 4, {"reward": 0.4, "kl_to_base_seq": 1.0})
    st.mark_finished(rl, "succeeded", {"reward_before": 0.2, "reward_after": 0.5, "kl_to_base": 0.05,
                                       "kl_to_base_seq": 2.0})
    bon = st.create_run("best-of-n", "bon", "sentiment", {"method_config": {"policy": "base"}})
    st.mark_finished(bon, "succeeded", {"results": [{"n": 1, "reward": 0.2, "kl_bound": 0.0},
                                                    {"n": 4, "reward": 0.6, "kl_bound": 0.636}]})
    judge = st.create_run("prompt->reward", "contrastive", "pirate",
                          {"method_config": {"aggregate": "mean", "n_heldout": 5}})
    st.add_artifact(judge, "reward", "reward", None, {"kind": "contrastive"})
    st.mark_finished(judge, "succeeded", {"pair_accuracy": 0.75, "spearman": 0.5})
    yield from _serve(tmp_path, model_cache_dir)


def test_history_filters_and_exports_and_compare_draws_its_charts(seeded_server):
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(seeded_server)
        # History: filter to one scenario, open its run, export it
        page.get_by_role("tab", name="History").click()
        page.locator("#history-scenario input").click()
        page.get_by_role("option", name="pirate").click()
        expect(page.locator("#history-message")).to_contain_text("1 of 3 runs shown", timeout=30_000)
        expect(page.locator("#history-table")).not_to_contain_text("best-of-n")
        page.locator("#history-table [role=gridcell]", has_text="contrastive").first.click()
        expect(page.locator("#history-artifact")).to_contain_text("contrastive", timeout=30_000)
        # opening a run points the Convert tab's scenario, edge and method at it
        page.get_by_role("tab", name="Convert").click()
        expect(page.locator("#edge-radio input[value='prompt->reward']")).to_be_checked(timeout=30_000)
        expect(page.locator("#method-dropdown input")).to_have_value("contrastive", timeout=30_000)
        # ... and its settings form at the settings that run ran with, until a preset is chosen
        expect(page.locator("#preset-radio input[value='opened run']")).to_be_checked(timeout=30_000)
        expect(page.locator("#set-aggregate").locator("input, textarea")).to_have_value("mean")
        expect(page.locator("#set-n_heldout input")).to_have_value("5")
        page.locator("#preset-radio").get_by_text("default", exact=True).click()
        expect(page.locator("#set-aggregate").locator("input, textarea")).to_have_value("sum", timeout=10_000)
        expect(page.locator("#set-n_heldout input")).to_have_value("0")
        page.get_by_role("tab", name="History").click()
        page.locator("#history-export").click()
        link = page.locator("#history-files a[href$='.csv']:not([href$='.samples.csv'])")
        expect(link).to_be_visible(timeout=30_000)
        csv_text = page.request.get(link.get_attribute("href")).text()
        assert "metric.pair_accuracy" in csv_text and "pirate" in csv_text
        # Compare: a tiny compare of base and the prompt draws every chart; the stored RL run is on the frontier
        page.get_by_role("tab", name="Compare").click()
        expect(page.locator("#compare-frontier")).to_contain_text("rloo", timeout=30_000)
        page.get_by_text("Settings").last.click()
        for name, value in {"n_inputs": 2, "n_samples": 1, "max_new_tokens": 8}.items():
            box = page.locator(f"#compare-{name} input")
            box.fill(str(value))
            box.press("Tab")
        page.locator("#compare-button").click()
        expect(page.locator("#compare-status")).to_contain_text("Compared 2 policies", timeout=300_000)
        for chart in ("#compare-rewards", "#compare-kl", "#compare-frontier"):
            expect(page.locator(f"{chart} .js-plotly-plot")).to_be_visible()
        expect(page.locator("#compare-kl")).to_contain_text("0.000")
        expect(page.locator("#compare-table")).to_contain_text("π0 + z (prompt)")
        expect(page.locator("#compare-frontier")).to_contain_text("this compare")
        browser.close()


ADMIN = "admin-token-for-the-browser-test"


@pytest.fixture
def class_server(tmp_path, model_cache_dir, monkeypatch):
    """A shared lab (an admin token set: multi-user) whose queue only fills (LAB_WORKER=0: nothing runs), with
    two finished context distillations to time a queued one by."""
    from datetime import timedelta

    from sqlalchemy import update

    from storage import Run, Store
    from storage.models import utcnow
    st = Store(f"sqlite:///{tmp_path / 'lab.sqlite'}")
    for seconds in (100, 140):
        rid = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {"steps": 2}})
        st.mark_started(rid, owner="1@h")
        with st.session.begin() as s:
            s.execute(update(Run).where(Run.id == rid).values(started_at=utcnow() - timedelta(seconds=seconds)))
        st.mark_finished(rid, "succeeded", {"kl_after": 0.1})
    monkeypatch.setenv("LAB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("LAB_WORKER", "0")
    for url in _serve(tmp_path, model_cache_dir):
        yield url, st


def _submit_tiny(page) -> str:
    """Fill the form with a tiny distillation, press Run; the new run's id."""
    import re

    from playwright.sync_api import expect
    expect(page.locator("#visitor-line")).to_contain_text("You are visitor", timeout=60_000)
    _set(page, "steps", 2)
    page.locator("#run-button").click()
    expect(page.locator("#convert-status")).to_contain_text("Submitted run", timeout=30_000)
    return re.search(r"Submitted run (\w+)", page.locator("#convert-status").inner_text()).group(1)


def _shot(page, name: str) -> None:
    """LAB_SHOTS_DIR set: a screenshot of what the page shows now, for a person to look at."""
    if os.environ.get("LAB_SHOTS_DIR"):
        page.screenshot(path=os.path.join(os.environ["LAB_SHOTS_DIR"], name))


def _open_in_history(page, run_id: str) -> None:
    from playwright.sync_api import expect
    page.get_by_role("tab", name="History").click()
    page.locator("#history-whose").get_by_text("everyone").click()
    cell = page.locator("#history-table [role=gridcell]", has_text=run_id).first
    expect(cell).to_be_visible(timeout=30_000)
    cell.click()
    expect(page.locator("#history-run")).to_contain_text(run_id, timeout=30_000)


def test_two_visitors_own_their_runs(class_server):
    """A and B are two browsers (two BrowserStates): B opens on its own run, never A's; sees A's run under
    "everyone" but cannot cancel or delete it; A can."""
    from playwright.sync_api import expect, sync_playwright
    url, st = class_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        a, b = (browser.new_context(viewport={"width": 1400, "height": 1100}, color_scheme="light").new_page()
                for _ in range(2))
        a.goto(url)
        run_a = _submit_tiny(a)
        expect(a.locator("#run-progress")).to_contain_text("queued · next in line · starts now, takes ≈ 2 min")
        b.goto(url)
        expect(b.locator("#visitor-line")).to_contain_text("You are visitor", timeout=60_000)
        expect(b.locator("#run-progress")).to_contain_text("No run selected")          # never A's run
        run_b = _submit_tiny(b)
        expect(b.locator("#run-progress")).to_contain_text(
            "number 2 in line (1 run ahead) · starts in ≈ 2 min, takes ≈ 2 min", timeout=30_000)
        _shot(b, "queued-run-eta.png")
        b.reload()
        expect(b.locator("#run-progress")).to_contain_text(run_b, timeout=60_000)      # B's own, after a reload
        # B sees A's run under "everyone", not under "mine"; cannot cancel it
        _open_in_history(b, run_a)
        expect(b.locator("#history-table")).to_contain_text("a visitor")
        _shot(b, "history-everyone.png")
        b.locator("#history-whose").get_by_text("mine").click()
        expect(b.locator("#history-table")).not_to_contain_text(run_a, timeout=30_000)
        expect(b.locator("#history-table")).to_contain_text(run_b)
        b.get_by_role("tab", name="Convert").click()
        expect(b.locator("#run-progress")).to_contain_text(run_a, timeout=30_000)
        b.get_by_role("button", name="Cancel run").click()
        expect(b.locator("#convert-status")).to_contain_text("belongs to another visitor", timeout=30_000)
        assert st.get_run(run_a)["status"] == "queued"
        # once A's run has finished, B cannot delete it either; A can
        st.mark_finished(run_a, "succeeded", {"kl_after": 0.1})
        _open_in_history(b, run_a)
        b.locator("#history-delete").click()
        b.locator("#history-confirm").click()
        expect(b.locator("#history-message")).to_contain_text("Cannot delete", timeout=30_000)
        b.wait_for_timeout(2_000)   # the table's refresh after the delete keeps the delete's message
        expect(b.locator("#history-message")).to_contain_text("Cannot delete")
        assert st.get_run(run_a) is not None
        _open_in_history(a, run_a)
        a.locator("#history-delete").click()
        a.locator("#history-confirm").click()
        expect(a.locator("#history-message")).to_contain_text(f"Deleted run {run_a}", timeout=30_000)
        browser.close()
