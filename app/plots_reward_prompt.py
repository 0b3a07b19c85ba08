"""Result charts of reward -> prompt: pure functions from a run's metrics and sample rows to figures."""
from __future__ import annotations

import plotly.graph_objects as go

from app.plot_style import TEMPLATE

CURVES = (("best_reward", "search: best train reward so far"), ("candidate_reward", "search: each prompt scored"),
          ("loss", "conditioned: training loss"))   # the live curves (metric point names)
LAYOUT = dict(height=320, template=TEMPLATE, margin=dict(l=40, r=20, t=40, b=40))
ORIGIN_COLORS = {"seed": "#1f77b4", "candidate list": "#7f7f7f", "yours": "#9467bd", "model rewrite": "#ff7f0e",
                 "edit": "#2ca02c"}


def prompt_reward_bars(metrics: dict) -> go.Figure:
    """Held-out reward of π0 with no prompt, with the seed prompt and with the best prompt found."""
    names = [("no prompt", "reward_none", "#7f7f7f"), ("seed prompt", "reward_seed", "#1f77b4"),
             ("best prompt", "reward_best", "#d62728")]
    items = [(n, metrics[k], c) for n, k, c in names if isinstance(metrics.get(k), (int, float))]
    fig = go.Figure(go.Bar(x=[n for n, _, _ in items], y=[v for _, v, _ in items],
                           marker_color=[c for _, _, c in items], text=[f"{v:.3f}" for _, v, _ in items],
                           textposition="outside"))
    fig.update_layout(title="held-out reward by prompt", yaxis_title="mean reward", **LAYOUT)
    return fig


def origin_group(origin: str) -> str:
    """'edit: splice' -> 'edit'; other origins are their own group."""
    return "edit" if origin.startswith("edit") else origin


def search_trajectory(samples: list[dict]) -> go.Figure:
    """Every scored prompt (its Eq. 16 estimate on the search inputs) by iteration, coloured by where it
    came from, and the best score so far."""
    rows = sorted((r for r in samples if r.get("policy") == "candidate"), key=lambda r: r.get("candidate", 0))
    fig = go.Figure()
    for group in dict.fromkeys(origin_group(r["output"]) for r in rows):
        pts = [r for r in rows if origin_group(r["output"]) == group]
        fig.add_trace(go.Scatter(x=[r["iteration"] for r in pts], y=[r["reward"] for r in pts], mode="markers",
                                 name=group, marker=dict(size=9, color=ORIGIN_COLORS.get(group)), opacity=0.8,
                                 text=[f"{r['output']}: {r['input'][:80]}" for r in pts]))
    best = best_so_far(rows)
    fig.add_trace(go.Scatter(x=[it for it, _ in best], y=[v for _, v in best], mode="lines", name="best so far",
                             line=dict(color="#d62728", shape="hv")))
    fig.update_layout(title="search trajectory (train inputs)", xaxis_title="iteration",
                      yaxis_title="mean reward", **LAYOUT)
    return fig


def best_so_far(rows: list[dict]) -> list[tuple[int, float]]:
    """(iteration, best score among the candidates scored up to the end of it), rows in scoring order."""
    out: dict[int, float] = {}
    best = float("-inf")
    for r in rows:
        best = max(best, r["reward"])
        out[r["iteration"]] = best
    return list(out.items())


def level_curve(metrics: dict) -> go.Figure:
    """Target level vs achieved held-out reward (Eq. 17), beside the mean reward of each level's training bin
    and the base model's reward."""
    achieved = metrics.get("reward_by_level") or []
    levels = list(range(1, len(achieved) + 1))
    fig = go.Figure(go.Scatter(x=levels, y=achieved, mode="lines+markers", name="achieved (held-out)",
                               line=dict(color="#d62728")))
    target = metrics.get("train_reward_by_level") or []
    if target:
        fig.add_trace(go.Scatter(x=levels, y=target, mode="lines+markers", name="training bin mean",
                                 line=dict(color="#1f77b4", dash="dash")))
    if isinstance(metrics.get("reward_base"), (int, float)):
        fig.add_hline(y=metrics["reward_base"], line=dict(color="#7f7f7f", dash="dot"), annotation_text="π0")
    rho = metrics.get("spearman_level_vs_reward")
    fig.update_layout(title="target level vs achieved reward" + (f" (Spearman {rho:.2f})" if rho is not None else ""),
                      xaxis=dict(title="target level s", dtick=1), yaxis_title="mean reward", **LAYOUT)
    return fig


def level_spread(samples: list[dict]) -> go.Figure:
    """The reward of every held-out sample at each target level, as box plots."""
    fig = go.Figure()
    policies = sorted({r["policy"] for r in samples if str(r.get("policy", "")).startswith("level ")},
                      key=lambda p: int(p.split()[1]))
    for p in policies:
        fig.add_trace(go.Box(y=[r["reward"] for r in samples if r["policy"] == p], name=p, boxpoints="all",
                             jitter=0.4, pointpos=0, marker=dict(size=4), line=dict(color="#d62728")))
    fig.update_layout(title="held-out reward of each sample by target level", showlegend=False,
                      yaxis_title="reward", **LAYOUT)
    return fig


def reward_prompt_figures(metrics: dict, samples: list[dict]) -> tuple[go.Figure, go.Figure]:
    """The two result charts: search (bars, trajectory) or conditioned (level curve, spread)."""
    if "reward_by_level" in metrics:
        return level_curve(metrics), level_spread(samples)
    return prompt_reward_bars(metrics), search_trajectory(samples)
