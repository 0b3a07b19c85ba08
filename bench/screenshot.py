"""Take the README's screenshot, or the whole set to look at: serve the lab on a data dir, open it in Chromium, save PNGs.

Usage:
  python bench/screenshot.py OUT.png [--data-dir DIR] [--run RUN_ID]     one shot of a run (default: the latest in DIR)
  python bench/screenshot.py --set OUT_DIR [--data-dir DIR] [--run RUN_ID]
      light and dark (?__theme=dark), 1400 and 390 px wide: the opening page of a new visitor (an empty data dir
      beside DIR's model cache), a run of theirs queued behind another's (1400 px), each finished run; the About
      tab's equations at 1400 px
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (1400, 390)
THEMES = ("light", "dark")


@contextlib.contextmanager
def serve(data_dir: str):
    """The lab on a free port over `data_dir`; its URL until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAB_DATA_DIR": data_dir, "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            if proc.poll() is not None:
                raise RuntimeError(f"the lab exited with code {proc.returncode} before serving (its log is above)")
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("the lab did not answer within 120 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def shoot(browser, url: str, out: str, width: int, theme: str, ready: str, tab: str | None = None) -> None:
    """One full-page PNG at `width` px in `theme`, once `ready` (a CSS selector) is visible."""
    page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1,
                            color_scheme=theme)
    page.goto(url + ("&" if "?" in url else "?") + f"__theme={theme}")
    page.locator("#host-line").filter(has_text="parameters").wait_for(timeout=120_000)
    if tab:
        page.get_by_role("tab", name=tab).click()
    page.locator(ready).first.wait_for(timeout=60_000)
    page.wait_for_timeout(3000)   # plotly and KaTeX draw after the component is there
    page.screenshot(path=out, full_page=True)
    page.close()


def shoot_queued(browser, url: str, out: str, theme: str) -> None:
    """A visitor's run waiting behind another visitor's: someone else queues a default distillation through the
    API (it starts at once), then this page clicks Run on the same; the shot shows its place and ETA (from the
    gallery's finished run of that method, when the lab opened on the gallery)."""
    import secrets

    from gradio_client import Client
    Client(url, verbose=False).predict("prompt", "parameter", "kl", "sentiment", {}, "other-" + secrets.token_hex(8),
                                       api_name="/convert")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1, color_scheme=theme)
    page.goto(url + f"?__theme={theme}")
    page.locator("#host-line").filter(has_text="parameters").wait_for(timeout=120_000)
    page.locator("#run-button").click()
    page.locator("#run-progress").filter(has_text="queued").wait_for(timeout=60_000)
    page.wait_for_timeout(3000)
    page.screenshot(path=out, full_page=True)
    page.close()


def shoot_set(out_dir: Path, data_dir: str, runs: list[str]) -> None:
    """opening-THEME-WIDTH.png, queued-THEME-1400.png, run-THEME-WIDTH.png (run2-… for a second run) and
    about-THEME-1400.png."""
    from playwright.sync_api import sync_playwright
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as empty, sync_playwright() as p:
        (Path(empty) / "model-cache").symlink_to(Path(data_dir, "model-cache").resolve(), target_is_directory=True)
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        with serve(empty) as url:          # a new visitor: nothing has run yet
            for w in WIDTHS:
                for t in THEMES:
                    shoot(browser, url, str(out_dir / f"opening-{t}-{w}.png"), w, t,
                          "#gallery, #generations-empty")   # the gallery's first example, or an empty lab
            for t in THEMES:
                shoot_queued(browser, url, str(out_dir / f"queued-{t}-1400.png"), t)
        with serve(data_dir) as url:
            for i, run in enumerate(runs or [""]):
                name = "run" + (str(i + 1) if i else "")
                for w in WIDTHS:
                    for t in THEMES:
                        shoot(browser, url + (f"?run={run}" if run else ""), str(out_dir / f"{name}-{t}-{w}.png"),
                              w, t, "#generations")
            for t in THEMES:   # at 390 px the tabs fold into a menu
                shoot(browser, url, str(out_dir / f"about-{t}-1400.png"), 1400, t, "#about-text .katex", tab="About")
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?")
    ap.add_argument("--set", help="a folder for the whole set of screenshots")
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    ap.add_argument("--run", action="append", default=[],
                    help="open this run (the page's /?run=RUN_ID link); with --set, one or more")
    args = ap.parse_args()
    if args.set:
        shoot_set(Path(args.set), args.data_dir, args.run)
        return
    from playwright.sync_api import sync_playwright
    with serve(args.data_dir) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.goto(url + (f"?run={args.run[0]}" if args.run else ""))
        page.locator("#generations").wait_for(timeout=60_000)
        page.wait_for_timeout(5000)
        page.screenshot(path=args.out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
