"""Pages poll only while what they watch moves (issue: a run in the page costs what it costs from the CLI)."""
from app import polling


def test_a_tab_polls_each_second_while_its_run_runs_slower_while_queued_and_not_once_it_ended():
    assert polling.interval("running") == 5.0 and polling.interval("queued") == 2.0
    for ended in ("succeeded", "failed", "cancelled", "interrupted", None):
        assert polling.interval(ended) is None                         # the convert tab's timer stops
        assert polling.interval(ended, polling.IDLE_S) == 10.0          # History looks for new runs, slowly
    assert polling.interval("running", running_s=2.0) == 2.0
    on, off = polling.timer_for("queued"), polling.timer_for("succeeded")
    assert (on.value, on.active) == (2.0, True) and off.active is False


def test_the_round_trip_tab_redraws_its_figure_only_when_the_numbers_change(settings):
    from app import tab_chain
    from engine.api import Lab
    lab = Lab(settings=settings, host_factory=lambda: None)
    status, fig, numbers, shown, timer = tab_chain._refresh(lab, None, None)
    assert timer.active is False                                         # no round trip: no polling
    rid = lab.store.create_run("chain", "prompt,parameter,prompt", "sentiment", {"method_config": {}}, status="running")
    status, fig, numbers, shown, timer = tab_chain._refresh(lab, rid, None)
    assert fig is not None and (timer.value, timer.active) == (5.0, True)
    again = tab_chain._refresh(lab, rid, shown)
    assert again[1] == tab_chain.gr.skip() and again[4].active          # same numbers: the figure is not rebuilt
    lab.store.mark_finished(rid, "succeeded", metrics={"hops": []})
    status, fig, numbers, shown, timer = tab_chain._refresh(lab, rid, shown)
    assert fig is not None and timer.active is False                   # the end is drawn, then polling stops


def test_a_moving_run_redraws_its_progress_line_and_only_new_curves_then_everything_when_it_ends(settings):
    from app import tab_convert
    from engine.api import Lab
    lab = Lab(settings=settings, host_factory=lambda: None)
    skip = tab_convert.gr.skip()
    rid = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}}, status="running")
    first = tab_convert._refresh(lab, rid, None, 3)
    assert len(first) == 16 and first[1] != skip and first[14].active      # a new run: all of it, polling on
    lab.store.report_progress(rid, 0.3, "training step 3/10")
    moved = tab_convert._refresh(lab, rid, first[6], 3)
    assert "30%" in moved[0] and moved[6] != first[6]                           # the line follows the run…
    assert all(out == skip for i, out in enumerate(moved) if i not in (0, 6))  # …and nothing else is sent
    lab.store.add_points(rid, 3, {"loss": 0.12})
    grown = tab_convert._refresh(lab, rid, moved[6], 3)
    assert grown[1] != skip and list(grown[1].data[0].y) == [0.12]          # a new point: the curves redraw
    assert all(out == skip for i, out in enumerate(grown) if i not in (0, 1, 6))
    lab.store.mark_finished(rid, "succeeded", metrics={"kl_before": 0.2, "kl_after": 0.1})
    ended = tab_convert._refresh(lab, rid, grown[6], 3)
    assert ended[14].active is False and ended[4] != skip                   # the end: results drawn, polling off


def test_the_page_gets_its_frame_throttle_before_gradio_scripts_and_nothing_else_changes():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from app.early_head import THROTTLE_STATUS_FRAMES, EarlyHead, inject
    page = "<html><head><script type='module' src='index.js'></script></head><body>Ω</body></html>"
    assert inject(page.encode()).startswith(b"<html><head>" + THROTTLE_STATUS_FRAMES + b"<script type='module'")
    assert inject(b"{}") == b"{}"
    app = Starlette(routes=[Route("/", lambda r: HTMLResponse(page)), Route("/config", lambda r: JSONResponse({"a": 1})),
                            Route("/other", lambda r: HTMLResponse(page))], middleware=[Middleware(EarlyHead)])
    client = TestClient(app)
    got = client.get("/")
    assert got.status_code == 200 and got.content == inject(page.encode())   # the length follows the new body
    assert got.text.index("statustracker") < got.text.index("index.js")
    assert client.get("/config").json() == {"a": 1} and client.get("/other").text == page
