"""Turning stored runs into what the page shows: tables, progress bars, numbers (pure functions)."""
from __future__ import annotations

import html
from datetime import datetime, timezone

import pandas as pd

POLICY_ORDER = ["base", "teacher", "student", "trained", "positive", "negative", "π0", "π*", "π1", "π2"]
POLICY_TITLES = {"base": "base π0", "teacher": "π0 + prompt (teacher)", "student": "π0 + adapter (student)",
                 "positive": "π0 + z+", "negative": "π0 + z−", "trained": "π0 + adapter (trained on r)",
                 "π2": "π2 = π1 steered by r* (Eq. 7)"}


def side_by_side(samples: list[dict], sample_index: int = 0) -> pd.DataFrame:
    """One row per held-out input; one column per policy with its generation and reward."""
    if not samples:
        return pd.DataFrame(columns=["input"])
    df = pd.DataFrame(samples)
    df = df[df["sample_index"] == sample_index]
    means = pd.DataFrame(samples).groupby("policy")["reward"].mean()
    policies = [p for p in POLICY_ORDER if p in set(df["policy"])] + sorted(set(df["policy"]) - set(POLICY_ORDER))
    table = pd.DataFrame({"input": list(dict.fromkeys(df["input"]))})
    for p in policies:
        d = df[df["policy"] == p].drop_duplicates("input").set_index("input")
        title = f"{POLICY_TITLES.get(p, p)} · mean r={means[p]:.3f}"
        table[title] = [_cell(d.loc[x]) if x in d.index else "" for x in table["input"]]
    return table


def _cell(row) -> str:
    """A generation with its reference reward (and a derived reward when the edge produced one)."""
    derived = row.get("derived") if hasattr(row, "get") else None
    extra = f", derived={derived:.2f}" if isinstance(derived, (int, float)) and derived == derived else ""
    return f"{row['output']}  [r={row['reward']:.2f}{extra}]"


def minutes(seconds: float) -> str:
    """"≈ 40 s", "≈ 3 min", "≈ 1 h 10 min": an estimate, rounded as one."""
    if seconds < 60:
        return f"≈ {max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 3600:
        return f"≈ {round(seconds / 60):.0f} min"
    return f"≈ {int(seconds // 3600)} h {round(seconds % 3600 / 60):.0f} min"


def eta_text(eta: dict | None) -> str:
    """A queued run's wait and length (Lab.queue_estimate), e.g. "starts in ≈ 6 min, takes ≈ 3 min"."""
    if not eta:
        return ""
    n = eta["unknown"]
    if eta["wait_s"] is None:
        start = "starts in: unknown (no finished run of the runs ahead to time them by)"
    elif n:   # some runs ahead could not be timed: what is known is a lower bound
        start = f"starts in {minutes(eta['wait_s']).replace('≈', '≥')} ({n} run{'s' if n > 1 else ''} ahead not timed yet)"
    else:
        start = f"starts in {minutes(eta['wait_s'])}" if eta["wait_s"] else "starts now"
    length = (f"takes {minutes(eta['run_s'])} (median of finished runs like it)" if eta["run_s"] is not None
              else "its length: unknown (no finished run of this method yet)")
    return f"{start}, {length}"


def progress_html(run: dict | None, queue: dict | None = None, now: datetime | None = None) -> str:
    """A progress bar with the run's stage, time spent and time left (a queued run: its place in the queue and its
    ETA, `queue` as Lab.queue_estimate gives it); colour by status. `now`: UTC, naive like the stored times."""
    if not run:
        return "<div class='lab-progress'><em>No run selected.</em></div>"
    pct = int(round(100 * (run.get("progress") or 0)))
    colors = {"succeeded": "#2ca02c", "failed": "#d62728", "cancelled": "#7f7f7f", "interrupted": "#ff7f0e"}
    color = colors.get(run["status"], "#1f77b4")
    label = f"{run['status']} · {pct}% · {stage_text(run.get('stage'))}" + time_text(run, now)
    position = (queue or {}).get("position")
    if run["status"] == "queued" and position:
        label = ("queued · next in line" if position == 1 else
                 f"queued · number {position} in line ({position - 1} run{'s' if position > 2 else ''} ahead)")
        label += f" · {eta_text(queue)}" if "wait_s" in queue else ""
    elif run["status"] == "interrupted":
        label = f"interrupted at {pct}% · the lab stopped during this run: Run again starts it anew"
    return (f"<div class='lab-progress' data-status='{run['status']}'>"
            f"<div style='font-size:0.9em;margin-bottom:4px'>run <code>{run['run_id']}</code> · "
            f"{html.escape(run['edge'])} · {html.escape(run['method'])} · {html.escape(run['scenario'])}</div>"
            f"<div class='lab-progress-track'>"
            f"<div style='background:{color};height:18px;border-radius:6px;width:{pct}%'></div></div>"
            f"<div style='font-size:0.85em;margin-top:4px'>{html.escape(label)}</div></div>")


def stage_text(stage: str | None) -> str:
    """The stored stage, named for a reader: loading, sampling, training step k/n, evaluating."""
    stage = stage or ""
    if stage in ("", "starting"):
        return "starting: loading the model and the scenario"
    if stage.startswith("held-out"):
        return "evaluating " + stage
    return stage


def time_text(run: dict, now: datetime | None = None) -> str:
    """" · 2 min 10 s so far, ≈ 3 min left" for a running run (left = elapsed × (1 − p)/p, once p > 5 %);
    " · took 4 min 10 s" for a finished one; "" for a queued one (its ETA says more)."""
    if run["status"] != "running":
        return f" · took {clock(run['duration_s'])}" if run.get("duration_s") else ""
    if not run.get("started_at"):
        return ""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    elapsed = max(0.0, (now - datetime.fromisoformat(run["started_at"])).total_seconds())
    p = run.get("progress") or 0.0
    left = f"{minutes(elapsed * (1 - p) / p)} left" if p > 0.05 else "estimating the time left…"
    return f" · {clock(elapsed)} so far, {left}"


def clock(seconds: float) -> str:
    """Time spent, to the second: "42 s", "3 min 05 s", "1 h 02 min"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def generations_note(run: dict | None, has_samples: bool) -> str:
    """What stands where the side-by-side generations will be (empty once they are there)."""
    if run is None:
        return ("*No run yet.* Press **Run**: when it finishes, its generations on held-out inputs appear here side "
                "by side — base π0, π0 with the prompt, π0 with the new adapter (or the edge's own policies), each "
                "with its reward.")
    if has_samples:
        return ""
    if run["status"] in ("queued", "running"):
        return "*The side-by-side generations appear here when the run finishes.*"
    return "*This run stored no generations.*"


def curves_note(run: dict | None) -> str:
    """What the empty live-curves chart says: no run yet, no point yet, or none recorded."""
    if run is None:
        return "no run yet: the live curves draw here while a run trains"
    if run["status"] in ("queued", "running"):
        return "no point yet: the first comes with the first evaluation"
    return "this run recorded no curve points"


def metrics_markdown(run: dict | None) -> str:
    if not run:
        return ""
    if run["status"] == "failed":
        return f"**Run failed.** {run.get('error') or ''}".split("\nTraceback")[0]
    m = run.get("metrics") or {}
    if not m:
        return ""
    rows = "\n".join(f"| `{k}` | {metric_text(v)} |" for k, v in m.items() if not _is_table(v) and k != "warnings")
    dur = f" in {run['duration_s']:.0f} s" if run.get("duration_s") else ""
    return (warnings_markdown(m.get("warnings"))
            + f"**Final numbers** (held-out){dur}\n\n| metric | value |\n|---|---|\n{rows}"
            + hops_markdown(m.get("hops")) + found_prompt_markdown(run))


def warnings_markdown(warnings: list[str] | None) -> str:
    """A run's warnings (e.g. RL without reward signal), above its numbers, where they are read first."""
    return "".join(f"<div class='lab-warning'>⚠ <b>Warning.</b> {html.escape(w)}</div>\n\n"
                   for w in warnings or [])


def _is_table(value) -> bool:
    """Lists of records (hops, best-of-N rows): drawn as their own table or chart, not squeezed into a cell."""
    return isinstance(value, list) and any(isinstance(v, dict) for v in value)


def metric_text(value) -> str:
    """One metric cell: numbers to 4 decimals, lists of numbers as a short list, nothing as a dash, anything
    else as text."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(metric_text(v) for v in value) + "]"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def hops_markdown(hops: list[dict] | None) -> str:
    """A round trip's hops: run, KL to the original prompted behaviour, reward (or a reward's agreement)."""
    if not hops:
        return ""
    num = lambda v: f"{v:.4f}" if isinstance(v, (int, float)) else "—"
    rows = "\n".join(f"| {i + 1} | {h['edge']} ({h['method']}) | `{h['run_id']}` | "
                     + " | ".join(num(h["metrics"].get(k)) for k in ("kl_to_origin", "reward", "pair_accuracy")) + " |"
                     for i, h in enumerate(hops))
    return ("\n\n**Hops** (KL(π0(·|x,z) ‖ π_hop) per token; a hop ending at the reward vertex reports its "
            "pair accuracy instead)\n\n| hop | edge | run | kl_to_origin | reward | pair_accuracy |\n"
            f"|---|---|---|---|---|---|\n{rows}")


def found_prompt_markdown(run: dict) -> str:
    """parameter -> prompt: the readable prompt found, or a soft prompt's nearest tokens."""
    if run.get("edge") != "parameter->prompt":
        return ""
    for a in run.get("artifacts") or []:
        data = a.get("data") or {}
        if a["kind"] == "prompt" and data.get("prompt_text"):
            return f"\n\n**Readable prompt** ({data.get('origin', '')}):\n\n> {html.escape(data['prompt_text'])}"
        if a["kind"] == "soft_prompt":
            return (f"\n\n**Soft prompt**: {data.get('n_tokens')} virtual tokens; nearest vocabulary tokens: "
                    f"`{html.escape(data.get('nearest_tokens') or '')}`")
    return ""


def runs_table(runs: list[dict], owner=None) -> pd.DataFrame:
    """One row per run; with `owner(run) -> str` (a shared lab: "you", "@account", "a visitor"), its column."""
    cols = ["run_id", "created", "edge", "method", "scenario", "model", "status", "progress", "duration_s",
            "key metrics"] + (["owner"] if owner else [])
    rows = []
    for r in runs:
        m = r.get("metrics") or {}
        key = ", ".join(f"{k}={v:.3g}" for k, v in m.items() if isinstance(v, (int, float)))
        rows.append([r["run_id"], r["created_at"], r["edge"], r["method"], r["scenario"], r.get("model") or "—",
                     r["status"],
                     f"{100 * (r.get('progress') or 0):.0f}%", r.get("duration_s"), key]
                    + ([owner(r)] if owner else []))
    return pd.DataFrame(rows, columns=cols)


def steer_table(rows: list[dict], w: float, error: str = "") -> pd.DataFrame:
    """Plain π1 beside the steered π2 at strength w, each with its reference reward."""
    if error:
        return pd.DataFrame({"error": [error]})
    return pd.DataFrame({"input": [r["input"] for r in rows],
                         "π1 (plain)": [f"{r['pi1']}  [r={r['reward_pi1']:.2f}]" for r in rows],
                         f"π2 steered, w={w:g}": [f"{r['steered']}  [r={r['reward_steered']:.2f}]" for r in rows]})


def compare_table(result: dict | None) -> pd.DataFrame:
    """A compare's generations: one row per (input, sample), one column per policy, in the order chosen.

    Rows share the seed, so a row shows what each policy wrote under the same sampling noise."""
    if not result:
        return pd.DataFrame(columns=["input"])
    df = pd.DataFrame(result["samples"])
    keys = df[["input", "sample_index"]].drop_duplicates()
    table = pd.DataFrame({"input": [f"{x}" + (f"  (#{k + 1})" if k else "") for x, k in keys.itertuples(index=False)]})
    for p in result["policies"]:
        d = df[df["policy"] == p["label"]].set_index(["input", "sample_index"])
        head = f"{p['label']} · r={p['mean_reward']:.2f}±{p['stderr']:.2f}"
        table[head] = [_compare_cell(d.loc[(x, k)]) if (x, k) in d.index else "—"   # not kept (a trimmed compare)
                       for x, k in keys.itertuples(index=False)]
    return table


def _compare_cell(row) -> str:
    extra = row.get("extra_reward")
    extra = f", r′={extra:.2f}" if isinstance(extra, (int, float)) and extra == extra else ""
    return f"{row['output']}  [r={row['reward']:.2f}{extra}]"


def artifact_markdown(run: dict | None) -> str:
    """What a run left at its target vertex: kind, where its files are, its prompt text if it is one."""
    artifacts = (run or {}).get("artifacts") or []
    link = f"[link to this run](/?run={run['run_id']})\n\n" if run else ""
    if not artifacts:
        return link + "*This run made no artifact (e.g. best-of-N), or it did not finish.*"
    parts = [link.strip()] if link else []
    for a in artifacts:
        data = dict(a.get("data") or {})
        text = data.pop("prompt_text", None)
        line = f"**{a['kind']}** at the {a['vertex']} vertex" + (f" · files: `{a['path']}`" if a.get("path") else "")
        body = "".join(f"\n- `{k}`: {html.escape(str(v))[:200]}" for k, v in data.items())
        parts.append(line + body + (f"\n\nprompt text:\n```text\n{text}\n```" if text else ""))
    return "\n\n".join(parts)
