"""What the page costs a run: the same run from the CLI and from the page with a browser watching it, on the same
machine (as `make run` on a laptop: the browser, the server and the run share the cores), in one run each.

  CLI   `python -m engine convert --from prompt --to parameter --scenario sentiment --preset quick`, alone
  page  `python -m app`, headless Chromium opens it, picks the quick preset, clicks Run and keeps the page open
        (live curves, progress line, polling) until the run ends

The figure is each run's own wall time as stored (started → finished), and the ratio page / CLI; also the
CPU seconds the browser's processes and the server's used while the page run trained.

    .venv/bin/python bench/page_overhead.py [--scenario sentiment] [--preset quick]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def data_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="page-overhead-"))
    (d / "model-cache").symlink_to((ROOT / "data" / "model-cache").resolve(), target_is_directory=True)
    return d


def env_for(d: Path, **extra) -> dict:
    return {**os.environ, "LAB_DATA_DIR": str(d), "LAB_GALLERY": "0", "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False", **extra}


def stored_duration(d: Path) -> tuple[str, float]:
    """The run's status (with the precision it ran in: a start-up measurement disturbed by load once chose fp32
    on a bf16 machine, ×1.7 slower) and its stored wall time."""
    from storage import Store
    runs = Store(f"sqlite:///{d / 'lab.sqlite'}").list_runs(limit=10)
    run = runs[0]
    precision = (run["config"].get("runtime") or {}).get("precision", "?")
    return f"{run['status']}, {precision}", run["duration_s"]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children so far (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick
        except OSError:
            pass
    return total


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [g for k in kids for g in descendants(k)]


def cli_run(scenario: str, preset: str) -> tuple[str, float]:
    d = data_dir()
    subprocess.run([sys.executable, "-m", "engine", "prepare-model", "--json"], cwd=ROOT, env=env_for(d),
                   capture_output=True, check=True)
    out = subprocess.run([sys.executable, "-m", "engine", "convert", "--from", "prompt", "--to", "parameter",
                          "--scenario", scenario, "--preset", preset, "--json"], cwd=ROOT, env=env_for(d),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return stored_duration(d)


def page_run(scenario: str, preset: str, worker: str) -> tuple[str, float, float, float]:
    """`worker`: where the page's run trains — `thread` (a thread of the page's own process, as `python -m app`
    did before) or `process` (a `python -m engine worker` beside it, sharing the database)."""
    from playwright.sync_api import expect, sync_playwright

    from bench.classroom_load import free_port, wait_up
    d = data_dir()
    port = free_port()
    page_env = env_for(d, GRADIO_SERVER_PORT=str(port), LAB_WORKER_MODE=worker)
    server = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=page_env,
                              stdout=subprocess.DEVNULL, stderr=open(d / "server.log", "w"))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_up(url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(url)
            expect(page.locator("#host-line")).to_contain_text("CPU", timeout=120_000)   # the model is loaded
            if scenario != "sentiment":
                raise SystemExit("the page run uses the form's default scenario, sentiment")
            page.locator("#preset-radio").get_by_text(preset, exact=True).click()
            time.sleep(2)
            server_pids = [server.pid] + descendants(server.pid)
            browser_pids = [pid for pid in descendants(os.getpid()) if pid not in server_pids]   # the lab is ours too
            cpu0 = cpu_seconds(browser_pids), cpu_seconds(server_pids)
            page.locator("#run-button").click()
            expect(page.locator("#run-progress")).to_contain_text("succeeded", timeout=3_600_000)
            browser_cpu = cpu_seconds(browser_pids) - cpu0[0]
            server_cpu = cpu_seconds(server_pids) - cpu0[1]
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    status, wall = stored_duration(d)
    return status, wall, browser_cpu, server_cpu


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", default="sentiment")
    p.add_argument("--preset", default="quick")
    p.add_argument("--workers", default="thread,process",
                   help="where the page's run trains, one page run each: thread (in the page's process), process")
    args = p.parse_args()
    status_cli, cli_s = cli_run(args.scenario, args.preset)
    print(f"prompt → parameter (kl), {args.scenario}, preset {args.preset}")
    print(f"  CLI  {cli_s:7.1f} s  ({status_cli})")
    out = {"cli_s": cli_s}
    for worker in args.workers.split(","):
        status_page, page_s, browser_cpu, server_cpu = page_run(args.scenario, args.preset, worker)
        print(f"  page, worker {worker:7s} {page_s:7.1f} s  ({status_page}); page / CLI = {page_s / cli_s:.3f} "
              f"(overhead {100 * (page_s / cli_s - 1):+.1f} %); browser {browser_cpu:.1f} CPU s, server "
              f"processes (run included) {server_cpu:.1f} CPU s while it ran", flush=True)
        out[worker] = {"page_s": page_s, "ratio": page_s / cli_s, "browser_cpu_s": browser_cpu,
                       "server_cpu_s": server_cpu}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
