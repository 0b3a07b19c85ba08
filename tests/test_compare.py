"""Compare: the KL matrix and reward statistics on hand-made numbers, the frontier from stored runs, the
figures, and one tiny real compare on the embedded model (base, the prompt, a stored adapter)."""
import math

import pytest
import torch

from app import plots_compare, views
from engine.compare import Sampled, frontier, kl_matrix, mean_stderr, split_choice
from engine.errors import LabInputError
from storage import Store


def _fixed(probs: list[list[float]]):
    """A policy whose next-token distribution is the same table at every position of every reply."""
    table = torch.tensor(probs).log()
    return lambda xs, ys: [table[:len(y)] for y in ys]


def _sampled(label, probs, n_tokens=(2, 2)):
    logprobs = _fixed(probs) if probs else None
    return Sampled(label, ["x"] * len(n_tokens), ["y"] * len(n_tokens), [[0] * t for t in n_tokens], logprobs)


def test_kl_matrix_matches_hand_computed_values():
    p = _sampled("p", [[0.5, 0.5]] * 3)
    q = _sampled("q", [[0.9, 0.1]] * 3, n_tokens=(3, 1))
    bon = _sampled("bon", None)
    M = kl_matrix([p, q, bon])
    kl_pq = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)   # 0.5108
    kl_qp = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)   # 0.3681
    assert M[0][0] == 0.0 and M[1][1] == 0.0
    assert M[0][1] == pytest.approx(kl_pq, abs=1e-6) and M[1][0] == pytest.approx(kl_qp, abs=1e-6)
    assert M[0][2] is None and M[2] == [None, None, None]  # best-of-N has no token distribution


def test_mean_and_standard_error():
    mean, se = mean_stderr([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3 / 4))  # squared deviations 2.25+0.25+0.25+2.25
    assert mean_stderr([0.7]) == (0.7, 0.0)


def test_choices_split_into_kinds():
    assert split_choice("base") == ("policy", "base")
    assert split_choice("scenario:pirate") == ("policy", "scenario:pirate")   # not a kind: a prompt reference
    assert split_choice(" 1a2b3c4d5e6f ") == ("policy", "1a2b3c4d5e6f")


def _stored_runs():
    """An RL run with a curve, best-of-N from π0 and from a prompt, a distillation run, a failed RL run."""
    st = Store("sqlite://")
    rl = st.create_run("reward->parameter", "rloo", "sentiment", {"method_config": {"beta": 0.05}})
    st.add_points(rl, 0, {"reward": 0.2, "kl_to_base": 0.0, "kl_to_base_seq": 0.0})
    st.add_points(rl, 2, {"reward": 0.4, "kl_to_base": 0.05, "kl_to_base_seq": 1.5, "loss": 0.3})
    st.add_artifact(rl, "adapter", "parameter", "/nowhere")
    st.mark_finished(rl, "succeeded", {"reward_before": 0.2, "reward_after": 0.5, "kl_to_base": 0.08,
                                       "kl_to_base_seq": 2.5})
    results = [{"n": 1, "reward": 0.2, "kl_bound": 0.0}, {"n": 4, "reward": 0.5, "kl_bound": math.log(4) - 0.75}]
    bon = st.create_run("best-of-n", "bon", "sentiment", {"method_config": {"policy": "base"}})
    st.mark_finished(bon, "succeeded", {"results": results})
    bon_z = st.create_run("best-of-n", "bon", "sentiment", {"method_config": {"policy": "prompt"}})
    st.mark_finished(bon_z, "succeeded", {"results": results})
    cd = st.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}})
    st.add_artifact(cd, "adapter", "parameter", "/nowhere")
    st.mark_finished(cd, "succeeded", {"kl_before": 0.2, "kl_after": 0.05, "reward_student": 0.6})
    failed = st.create_run("reward->parameter", "dpo", "sentiment", {"method_config": {}})
    st.mark_finished(failed, "failed", error="boom")
    return st, {"rl": rl, "bon": bon, "bon_z": bon_z, "cd": cd}


def test_frontier_places_stored_runs_and_measured_policies():
    st, ids = _stored_runs()
    runs = st.list_runs(scenario="sentiment", with_artifacts=True)
    fr = frontier(runs, st.points)
    assert [(p["run_id"], p["kl"], p["reward"], p["source"]) for p in fr["points"]] == [(ids["rl"], 2.5, 0.5, "stored")]
    rl_curve, bon_curve = sorted(fr["curves"], key=lambda c: c["kind"], reverse=True)
    assert rl_curve["kl"] == [0.0, 1.5, 2.5] and rl_curve["reward"] == [0.2, 0.4, 0.5]
    assert bon_curve["run_id"] == ids["bon"] and bon_curve["text"] == ["N=1", "N=4"]  # not the one from a prompt
    assert fr["unplaced"] == [f"LoRA (kl) {ids['cd'][:6]}"]  # the distillation adapter has no KL to π0 yet
    measured = {"scenario": "sentiment", "policies": [
        {"choice": "base", "label": "π0 (base)", "kind": "policy", "edge": "base", "mean_reward": 0.1,
         "stderr": 0.05, "kl_to_base_seq": 0.0, "kl_bound": None},
        {"choice": ids["cd"], "label": "LoRA (kl)", "kind": "policy", "edge": "prompt->parameter",
         "mean_reward": 0.6, "stderr": 0.1, "kl_to_base_seq": 4.0, "kl_bound": None}]}
    fr = frontier(runs, st.points, measured)
    assert fr["unplaced"] == []
    assert [(p["edge"], p["kl"], p["source"]) for p in fr["points"][1:]] == \
        [("base", 0.0, "measured"), ("prompt->parameter", 4.0, "measured")]
    fig = plots_compare.frontier_figure(fr)   # two curves; the RL run's own point is its curve's end
    assert len(fig.data) == 2 + 2 and [t.marker.symbol for t in fig.data[2:]] == ["diamond", "diamond"]
    assert fig.data[3].text == ("LoRA (kl)",)   # measured points are named on the chart


def test_runs_of_another_model_stay_off_the_chart_and_the_menus_and_are_refused_by_name():
    from engine.references import stored_artifact
    st, ids = _stored_runs()
    gemma = st.create_run("reward->parameter", "rloo", "sentiment", {"method_config": {"beta": 0.1}})
    st.update_run(gemma, model="embedded:gemma3-270m")
    st.add_artifact(gemma, "adapter", "parameter", "/nowhere")
    st.mark_finished(gemma, "succeeded", {"reward_after": 0.9, "kl_to_base_seq": 1.0})
    st.update_run(ids["rl"], model="embedded:smollm2-135m")
    runs = st.list_runs(scenario="sentiment", with_artifacts=True)
    fr = frontier(runs, st.points, model="embedded:smollm2-135m")
    assert gemma not in {p["run_id"] for p in fr["points"]} | {c["run_id"] for c in fr["curves"]}
    assert ids["rl"] in {c["run_id"] for c in fr["curves"]}          # its own model's run, and older ones, stay
    assert fr["other_models"] == {"embedded:gemma3-270m": 1}
    fig = plots_compare.frontier_figure(fr)
    assert "(embedded:smollm2-135m)" in fig.layout.title.text
    assert "Not shown: 1 run of embedded:gemma3-270m" in fig.layout.annotations[0].text
    assert frontier(runs, st.points, model="embedded:gemma3-270m")["other_models"] == {"embedded:smollm2-135m": 1}
    assert [r["model"] for r in st.list_runs(model="embedded:gemma3-270m")] == ["embedded:gemma3-270m"]
    with pytest.raises(LabInputError, match="made on model 'embedded:gemma3-270m'; this lab runs "
                                            "'embedded:smollm2-135m'.*LAB_MODEL=embedded:gemma3-270m"):
        stored_artifact(st.get_run, gemma, "policy", ("adapter",), "embedded:smollm2-135m")
    assert stored_artifact(st.get_run, gemma, "policy", ("adapter",), "embedded:gemma3-270m")["path"] == "/nowhere"


def test_the_compare_menu_lists_only_this_models_runs(lab):
    theirs = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}})
    lab.store.update_run(theirs, model="embedded:gemma3-270m")
    lab.store.add_artifact(theirs, "adapter", "parameter", "/nowhere")
    lab.store.mark_finished(theirs, "succeeded", {})
    assert lab.model == "embedded:smollm2-135m"                  # LAB_MODEL=embedded, canonical
    assert theirs not in [c["value"] for c in lab.compare_choices("sentiment")]
    assert lab.frontier("sentiment")["other_models"] == {"embedded:gemma3-270m": 1}
    with pytest.raises(LabInputError, match="made on model 'embedded:gemma3-270m'"):
        lab.compare("sentiment", [theirs])


RESULT = {
    "scenario": "s", "inputs": ["a", "b"], "config": {"n_samples": 1},
    "policies": [{"choice": "base", "label": "π0 (base)", "kind": "policy", "edge": "base", "mean_reward": 0.1,
                  "stderr": 0.05, "mean_extra": 1.0, "stderr_extra": 0.2},
                 {"choice": "prompt", "label": "π0 + z (prompt)", "kind": "policy", "edge": "prompt",
                  "mean_reward": 0.5, "stderr": 0.1, "mean_extra": 2.0, "stderr_extra": 0.3}],
    "kl": {"labels": ["π0 (base)", "π0 + z (prompt)"], "matrix": [[0.0, 0.2], [0.3, 0.0]]},
    "samples": [{"policy": p, "input": x, "output": f"{p} on {x}", "reward": 0.5, "sample_index": 0,
                 "extra_reward": 1.5} for p in ("π0 (base)", "π0 + z (prompt)") for x in ("a", "b")],
}


def test_compare_figures_and_table():
    bars = plots_compare.reward_bars(RESULT, "abc123")
    assert len(bars.data) == 2 and list(bars.data[0].error_y.array) == [0.05, 0.1]
    assert list(bars.data[0].marker.color) == [plots_compare.EDGE_COLORS["base"], plots_compare.EDGE_COLORS["prompt"]]
    heat = plots_compare.kl_heatmap(RESULT)
    assert [row[i] for i, row in enumerate(heat.data[0].z)] == [0.0, 0.0] and heat.data[0].text[1][0] == "0.300"
    t = views.compare_table(RESULT)
    assert list(t.columns) == ["input", "π0 (base) · r=0.10±0.05", "π0 + z (prompt) · r=0.50±0.10"]
    assert t.iloc[1, 2] == "π0 + z (prompt) on b  [r=0.50, r′=1.50]"


# ---------- a real compare on the embedded model ----------
@pytest.fixture
def adapter_run(lab, host, tmp_path):
    """A stored run whose artifact is a saved LoRA adapter, nudged away from π0 (B ≠ 0)."""
    from engine.lora import lora_config
    torch.manual_seed(0)
    host.add_lora("cmp-test", lora_config(4, 8, "q_proj,v_proj"))
    with torch.no_grad():
        for name, p in host.model.named_parameters():
            if ".cmp-test." in name and "lora_B" in name:   # B = 0 at init: the adapter would equal π0
                p.normal_(std=0.05)
    path = host.save_adapter("cmp-test", tmp_path / "artifacts" / "fake" / "adapter")
    host.delete_adapter("cmp-test")
    rid = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {}})
    lab.store.add_artifact(rid, "adapter", "parameter", str(path))
    lab.store.mark_finished(rid, "succeeded", {"kl_before": 0.2, "kl_after": 0.05})
    yield rid
    for name in [n for n in host.adapters if n.startswith("ref-")]:
        host.delete_adapter(name)


def test_tiny_compare_on_the_model(lab, adapter_run):
    assert [c["value"] for c in lab.compare_choices("sentiment")] == ["base", "prompt", adapter_run]
    stages = []
    res = lab.compare("sentiment", ["prompt", adapter_run], overrides={"n_inputs": 2, "n_samples": 2,
                                                                       "max_new_tokens": 6},
                      on_progress=lambda f, s: stages.append((f, s)))
    M = res["kl"]["matrix"]
    assert [p["choice"] for p in res["policies"]] == ["base", "prompt", adapter_run]  # base added first
    assert [M[i][i] for i in range(3)] == [0.0, 0.0, 0.0]
    assert M[1][0] > 0.01 and M[0][1] > 0.01 and M[2][0] > 0.0   # the prompt and the adapter move π0
    assert len(res["samples"]) == 3 * 2 * 2 and all(isinstance(s["reward"], float) for s in res["samples"])
    assert all(p["stderr"] >= 0 and p["kl_to_base_seq"] == pytest.approx(M[i][0] * p["mean_tokens"])
               for i, p in enumerate(res["policies"]))
    assert stages[-1] == (1.0, "done") and all(a[0] <= b[0] for a, b in zip(stages, stages[1:]))
    fr = lab.frontier("sentiment", res)
    assert {p["source"] for p in fr["points"]} == {"measured"} and len(fr["points"]) == 3 and fr["unplaced"] == []


def test_bad_references_are_refused_before_sampling(lab):
    with pytest.raises(LabInputError, match="no run with id 'nope'"):
        lab.compare("sentiment", ["nope"])
    with pytest.raises(LabInputError, match="n_inputs: 0 is out of range"):
        lab.compare("sentiment", ["prompt"], overrides={"n_inputs": 0})
    with pytest.raises(LabInputError, match="at most 8"):
        lab.compare("sentiment", [f"scenario:{i}" for i in range(9)])


def test_frontier_curves_of_one_edge_get_distinct_shades_and_dpo_is_dotted():
    curve = lambda run_id, method: {"label": f"RL {method} · {run_id}", "edge": "reward->parameter", "kind": "rl",
                                    "method": method, "run_id": run_id, "kl": [0.0, 1.0], "reward": [0.4, 0.8],
                                    "text": []}
    fig = plots_compare.frontier_figure({"points": [], "curves": [curve("a", "rloo"), curve("b", "dpo"),
                                                                  curve("c", "rloo")]})
    colors = [t.line.color for t in fig.data]
    assert len(set(colors)) == 3 and colors[0] == plots_compare.edge_color("reward->parameter")
    assert [t.line.dash for t in fig.data] == ["solid", "dot", "solid"]
    assert plots_compare.shade("#808080", 1) == "#464646" and plots_compare.shade("#808080", 2) == "#b9b9b9"
