"""The browser half of bench/space_check.sh: open the lab's page, check it runs the hub model with no banner,
and complete a tiny context-distillation run through the form. Prints one timed line per step.

  .venv/bin/python bench/space_check_page.py URL MODEL
Playwright drives Debian's Chromium (no browser download)."""
from __future__ import annotations

import sys
import time

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
TINY = {"steps": 2, "batch_size": 4, "n_train": 8, "n_heldout": 3, "eval_samples": 1, "max_new_tokens": 10,
        "teacher_samples": 1, "eval_every": 1}


def step(name: str, t0: float) -> float:
    now = time.perf_counter()
    print(f"  {name:<34} {now - t0:6.1f} s", flush=True)
    return now


def main(url: str, model: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        t = time.perf_counter()
        page.goto(url)
        expect(page.get_by_text("prompt → parameter").first).to_be_visible(timeout=60_000)
        t = step("page load (form visible)", t)
        expect(page.locator("#host-line")).to_contain_text(f"Model: {model} (", timeout=120_000)
        expect(page.locator("#host-line")).to_contain_text("chat format", timeout=120_000)
        expect(page.locator("#model-banner")).to_be_hidden()
        t = step("model loaded (header line)", t)
        for name, value in TINY.items():
            box = page.locator(f"#set-{name} input")
            box.fill(str(value))
            box.press("Tab")
        page.locator("#run-button").click()
        expect(page.locator("#convert-status")).to_contain_text("Submitted run", timeout=30_000)
        expect(page.locator("#run-progress")).to_contain_text("succeeded", timeout=600_000)
        expect(page.locator("#generations")).to_contain_text("π0 + adapter (student)", timeout=30_000)
        expect(page.locator("#final-metrics")).to_contain_text("kl_after")
        step("tiny distillation run (2 steps)", t)
        print("  host line: " + page.locator("#host-line").inner_text().strip())
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
