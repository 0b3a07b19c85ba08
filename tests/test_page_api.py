"""The page's Gradio API is deliberate: a named endpoint for each thing a script would do, none for the
page's plumbing; /convert queues a run and /run reads it back, through gradio_client against a live page; on a
shared lab /cancel and /delete_run need the token that queued the run, or the admin token."""
import pytest

from engine.api import Lab
from engine.settings import Settings

NAMED = {"/convert", "/run", "/cancel", "/run_again", "/steer", "/compare", "/history", "/export", "/delete_run", "/table1",
         "/round_trip", "/cancel_round_trip"}


ADMIN = "the-admin-token-0123456789"
TOKEN_A, TOKEN_B = "visitor-a-" + "a" * 16, "visitor-b-" + "b" * 16


def _no_host():
    raise AssertionError("queuing and reading runs must not need the model")


@pytest.fixture
def demo(tmp_path):
    from app.main import build_app
    settings = Settings(model="embedded", data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'lab.sqlite'}",
                        threads=1, worker=False,   # nothing runs: the queue keeps what /convert puts in
                        multi_user=True, admin_token=ADMIN)
    lab = Lab(settings=settings, host_factory=_no_host)
    return build_app(lab), lab


def test_only_the_scripting_endpoints_are_named_and_none_is_anonymous(demo):
    info = demo[0].get_api_info()
    assert set(info["named_endpoints"]) == NAMED
    assert not info.get("unnamed_endpoints")


def test_a_client_queues_a_run_and_reads_it_back(demo):
    from gradio_client import Client
    app, lab = demo
    app.queue().launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        out = client.predict("prompt", "parameter", "kl", "sentiment", {"steps": 3}, TOKEN_A, api_name="/convert")
        assert out["status"] == "queued" and lab.queue() == [out["run_id"]]
        run = client.predict(out["run_id"], api_name="/run")
        assert (run["status"], run["edge"], run["method"]) == ("queued", "prompt->parameter", "kl")
        assert run["config"]["method_config"]["steps"] == 3 and "visitor" not in run   # owners are not shown
        with pytest.raises(Exception, match="method 'sgd' is unknown"):
            client.predict("prompt", "parameter", "sgd", "sentiment", {}, api_name="/convert")
        with pytest.raises(Exception, match="is not a built-in"):                       # never a server path
            client.predict("prompt", "parameter", "kl", "/etc/passwd", {}, api_name="/convert")
        # the run is TOKEN_A's: another token, or none, may not cancel or delete it; the admin may
        for token in (TOKEN_B, ""):
            with pytest.raises(Exception, match="belongs to another visitor"):
                client.predict(out["run_id"], token, api_name="/cancel")
        assert client.predict(out["run_id"], TOKEN_A, api_name="/cancel") == {"run_id": out["run_id"], "cancelled": True}
        with pytest.raises(Exception, match="belongs to another visitor"):
            client.predict(out["run_id"], TOKEN_B, api_name="/delete_run")
        assert client.predict(out["run_id"], "", ADMIN, api_name="/delete_run")["deleted"] is True
        # a finished run with an adapter reads back too (gradio_client would fetch any {"path": ...} as a file)
        done = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}}, status="running")
        lab.store.add_artifact(done, "adapter", "parameter", path=str(lab.settings.data_dir / "artifacts" / done))
        lab.store.mark_finished(done, "succeeded", metrics={"kl_after": 0.05})
        run = client.predict(done, api_name="/run")
        assert (run["status"], run["metrics"]["kl_after"]) == ("succeeded", 0.05)
        assert [(a["kind"], a["file"]) for a in run["artifacts"]] == [("adapter", str(lab.settings.data_dir / "artifacts" / done))]
    finally:
        app.close()
