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
    proc.terminate()
    proc.wait(timeout=30)


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
    judge = st.create_run("prompt->reward", "contrastive", "pirate", {"method_config": {"aggregate": "sum"}})
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
