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
        # edges not built yet are visibly marked
        expect(page.get_by_text("reward → prompt  (not built yet)")).to_be_visible()
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
