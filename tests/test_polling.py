"""Pages poll only while what they watch moves (issue: a run in the page costs what it costs from the CLI)."""
from app import polling


def test_a_tab_polls_each_second_while_its_run_runs_slower_while_queued_and_not_once_it_ended():
    assert polling.interval("running") == 3.0 and polling.interval("queued") == 2.0
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
    assert fig is not None and (timer.value, timer.active) == (3.0, True)
    again = tab_chain._refresh(lab, rid, shown)
    assert again[1] == tab_chain.gr.skip() and again[4].active          # same numbers: the figure is not rebuilt
    lab.store.mark_finished(rid, "succeeded", metrics={"hops": []})
    status, fig, numbers, shown, timer = tab_chain._refresh(lab, rid, shown)
    assert fig is not None and timer.active is False                   # the end is drawn, then polling stops
