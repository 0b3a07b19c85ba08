"""Result charts of parameter -> prompt (pure: metrics in, plotly figures out)."""
from __future__ import annotations

import plotly.graph_objects as go

from app.plot_style import TEMPLATE

COLORS = {"none": "#7f7f7f", "soft": "#9467bd", "readable": "#2ca02c"}


def kl_items(metrics: dict) -> list[tuple[str, float]]:
    """(bar, KL) for no prompt, the soft prompt and the readable prompt, from either method's metrics.

    A soft run's readable prompt is its nearest-token projection (`kl_projected`); a discrete run's soft
    prompt is the one it was given to project (`kl_soft`), if any."""
    soft_run = "kl_projected" in metrics
    items = [("none", metrics.get("kl_before")),
             ("soft", metrics.get("kl_after") if soft_run else metrics.get("kl_soft")),
             ("readable", metrics.get("kl_projected") if soft_run else metrics.get("kl_after"))]
    return [(n, float(v)) for n, v in items if isinstance(v, (int, float))]


def kl_bars(metrics: dict) -> go.Figure:
    """KL(π* ‖ π0(·|x,z)) on held-out replies of π*: no prompt, soft prompt, readable prompt."""
    items = kl_items(metrics)
    names = {"none": "no prompt", "soft": "soft prompt", "readable": "readable prompt"}
    if "kl_projected" in metrics:
        names["readable"] = "readable (nearest tokens)"
    fig = go.Figure(go.Bar(x=[names[n] for n, _ in items], y=[v for _, v in items],
                           marker_color=[COLORS[n] for n, _ in items],
                           text=[f"{v:.4f}" for _, v in items], textposition="outside"))
    fig.update_layout(title="KL(π* ‖ π0(·|x,z)), nats/token (Eq. 12; lower = closer to the adapter)",
                      height=300, template=TEMPLATE, margin=dict(l=40, r=20, t=40, b=40))
    top = max([v for _, v in items] or [1.0])
    fig.update_yaxes(range=[0, 1.2 * top or 1.0])
    return fig


def reward_bars(metrics: dict) -> go.Figure:
    """Mean held-out reference reward of π* (the adapter), π0 and π0 with the found prompt."""
    names = (("π* (adapter)", "reward_star", "#d62728"), ("π0", "reward_base", "#7f7f7f"),
             ("π0 + found prompt", "reward_prompt", "#2ca02c"))
    items = [(n, metrics[k], c) for n, k, c in names if isinstance(metrics.get(k), (int, float))]
    fig = go.Figure(go.Bar(x=[n for n, _, _ in items], y=[v for _, v, _ in items],
                           marker_color=[c for _, _, c in items],
                           text=[f"{v:.3f}" for _, v, _ in items], textposition="outside"))
    fig.update_layout(title="held-out reference reward", height=300, template=TEMPLATE,
                      margin=dict(l=40, r=20, t=40, b=40), yaxis_title="mean reward")
    values = [v for _, v, _ in items] or [0.0]
    lo, hi = min(0.0, *values), max(0.0, *values)
    pad = 0.15 * ((hi - lo) or 1.0)
    fig.update_yaxes(range=[lo - (pad if lo < 0 else 0), hi + pad])
    return fig


def result_figures(metrics: dict) -> tuple[go.Figure, go.Figure]:
    return kl_bars(metrics), reward_bars(metrics)
