"""Figures of the Compare tab (pure: a compare result or frontier data in, a plotly figure out).

Colours follow what a policy is (base, the scenario's prompt) or the edge that made it, on every chart.
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.plot_style import TEMPLATE

EDGE_COLORS = {"base": "#7f7f7f", "prompt": "#17becf", "prompt->parameter": "#d62728",
               "reward->parameter": "#9467bd", "parameter->prompt": "#ff7f0e", "reward->prompt": "#8c564b",
               "parameter->reward": "#e377c2", "best-of-n": "#2ca02c"}
EDGE_NAMES = {"base": "base π0", "prompt": "π0 + prompt", "best-of-n": "best-of-N",
              "prompt->parameter": "LoRA distilled from a prompt", "reward->parameter": "LoRA trained on a reward",
              "parameter->prompt": "prompt found for an adapter", "reward->prompt": "prompt found for a reward",
              "parameter->reward": "steered by a reward"}
SYMBOLS = {"stored": "circle", "measured": "diamond", "bound": "triangle-left"}
SOURCE_NAMES = {"stored": "stored run", "measured": "this compare", "bound": "KL bound"}
LAYOUT = dict(template=TEMPLATE, font=dict(size=14), margin=dict(l=60, r=20, t=50, b=60))


def edge_color(edge: str) -> str:
    return EDGE_COLORS.get(edge, "#bcbd22")


def policy_colors(result: dict) -> list[str]:
    """One colour per compared policy: base, prompt, or the edge of the run that made it."""
    return [edge_color(p["edge"]) for p in result["policies"]]


def reward_bars(result: dict, reward_label: str = "") -> go.Figure:
    """Mean reference reward per policy with ± one standard error; a second panel for a stored reward."""
    pols = result["policies"]
    extra = "mean_extra" in (pols[0] if pols else {})
    fig = make_subplots(rows=1, cols=2 if extra else 1, horizontal_spacing=0.12,
                        subplot_titles=["reference reward r", f"stored reward r′ {reward_label}"] if extra else None)
    colors = policy_colors(result)
    panels = [("mean_reward", "stderr")] + ([("mean_extra", "stderr_extra")] if extra else [])
    for col, (mean, se) in enumerate(panels, start=1):
        ys, errs = [p[mean] for p in pols], [p[se] for p in pols]
        # the numbers sit under each bar's name, clear of the whiskers
        names = [f"{p['label']}<br><b>{y:.2f}</b> ± {e:.2f}" for p, y, e in zip(pols, ys, errs)]
        fig.add_trace(go.Bar(x=names, y=ys, error_y=dict(type="data", array=errs, visible=True, thickness=2),
                             marker_color=colors, showlegend=False, hovertemplate="%{x}<extra></extra>"),
                      row=1, col=col)
    fig.update_yaxes(title_text="mean reward ± 1 s.e.", row=1, col=1)
    fig.update_xaxes(tickfont=dict(size=13))
    fig.update_layout(height=380, title=dict(text="Mean reward per policy", x=0.01), **LAYOUT)
    return fig


def kl_heatmap(result: dict) -> go.Figure:
    """KL(row ‖ column) per token: rows sample, columns score; blank where a policy has no token distribution."""
    labels, M = result["kl"]["labels"], result["kl"]["matrix"]
    z = [[math.nan if v is None else v for v in row] for row in M]
    text = [["n/a" if v is None else f"{v:.3f}" for v in row] for row in M]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}",
                               textfont=dict(size=14), colorscale="Blues", zmin=0,
                               colorbar=dict(title=dict(text="nats/token")),
                               hovertemplate="KL(%{y} ‖ %{x}) = %{z:.4f} nats/token<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title_text="p: samples from")
    fig.update_xaxes(title_text="q: scored by", tickangle=-20, side="bottom")
    fig.update_layout(height=380, title=dict(text="KL(p ‖ q) between policies, per token", x=0.01), **LAYOUT)
    return fig


def frontier_figure(data: dict) -> go.Figure:
    """Reward against KL(π ‖ π0) per reply: points by edge (symbol = where the numbers come from), RL
    runs as curves over their training steps, best-of-N as a dashed curve at its KL bound."""
    fig = go.Figure()
    curves = data.get("curves") or []
    seen: dict[str, int] = {}
    for c in curves:                  # the n-th curve of an edge gets the n-th shade of the edge's colour
        fig.add_trace(_curve_trace(c, seen.get(c["edge"], 0)))
        seen[c["edge"]] = seen.get(c["edge"], 0) + 1
    on_a_curve = {c["run_id"] for c in curves}   # a curve ends at its run's final point: draw it once
    shown = set()
    for p in data.get("points") or []:
        if p["source"] == "stored" and p["run_id"] in on_a_curve:
            continue
        key = (p["edge"], p["source"])
        fig.add_trace(_point_trace(p, show=key not in shown))
        shown.add(key)
    _pad_x(fig, [x for t in fig.data for x in t.x])
    if not fig.data:
        fig.add_annotation(text="No run of this scenario has a KL to π0 yet: run a compare above,<br>"
                                "or an RL / best-of-N run in the Convert tab.",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=15))
    left_off = other_models_note(data)
    if left_off:   # one model per chart: a KL to another model's π0 is another axis
        fig.add_annotation(text=left_off, showarrow=False, x=0, y=-0.2, xref="paper", yref="paper",
                           xanchor="left", font=dict(size=12, color="#d62728"))
    model = f" ({data['model']})" if data.get("model") else ""
    fig.update_layout(height=460, title=dict(text=f"Reward vs KL to the base model{model}", x=0.01),
                      xaxis_title="KL(π ‖ π0) per reply (nats)", yaxis_title="mean reference reward",
                      legend=dict(orientation="v", x=1.01, y=1, font=dict(size=12)), **LAYOUT)
    return fig


def other_models_note(data: dict) -> str:
    """What the chart leaves out: runs of this scenario made on other models (their π0 is another model)."""
    others = data.get("other_models") or {}
    if not others:
        return ""
    runs = ", ".join(f"{n} run{'s' * (n > 1)} of {m}" for m, n in sorted(others.items()))
    return f"Not shown: {runs} — this chart has one model, {data.get('model') or 'the lab’s'}."


DASHES = {"best-of-n": "dash", "dpo": "dot"}   # by kind, then by method (RL: rloo solid, dpo dotted)


def shade(hex_color: str, i: int) -> str:
    """The i-th shade of a colour: i = 0 is the colour itself, later ones darker and lighter in turn."""
    if i == 0:
        return hex_color
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    f = (0.55, 1.45, 0.35, 1.7)[(i - 1) % 4]
    mix = (lambda v: round(v * f)) if f < 1 else (lambda v: round(v + (255 - v) * (f - 1)))
    return "#" + "".join(f"{min(255, mix(v)):02x}" for v in (r, g, b))


def _curve_trace(c: dict, i: int = 0) -> go.Scatter:
    return go.Scatter(x=c["kl"], y=c["reward"], mode="lines+markers+text" if c.get("text") else "lines+markers",
                      text=c.get("text") or None, textposition="bottom right", name=c["label"],
                      line=dict(color=shade(edge_color(c["edge"]), i),
                                dash=DASHES.get(c["kind"], DASHES.get(c.get("method", ""), "solid")), width=2),
                      marker=dict(size=6), opacity=0.85,
                      hovertemplate=c["label"] + "<br>KL %{x:.2f} · reward %{y:.3f}<extra></extra>")


def _point_trace(p: dict, show: bool) -> go.Scatter:
    name = f"{EDGE_NAMES.get(p['edge'], p['edge'])} · {SOURCE_NAMES[p['source']]}"
    err = dict(type="data", array=[p["stderr"]], visible=True) if p.get("stderr") else None
    measured = p["source"] != "stored"  # named on the chart itself: a projected chart is read without hovering
    marker = dict(size=15 if measured else 11, symbol=SYMBOLS[p["source"]], color=edge_color(p["edge"]),
                  line=dict(color="white", width=1))
    return go.Scatter(x=[p["kl"]], y=[p["reward"]], mode="markers+text" if measured else "markers", name=name,
                      text=[p["label"]] if measured else None, textposition="top right",
                      textfont=dict(color=edge_color(p["edge"])), legendgroup=name, showlegend=show, error_y=err,
                      marker=marker, hovertemplate=p["label"] + "<br>KL %{x:.2f} · reward %{y:.3f}<extra></extra>")


def _pad_x(fig: go.Figure, xs: list[float]) -> None:
    """Room right of the last point for its name, and left of KL = 0 for markers sitting on it."""
    if xs:
        hi = max(xs) or 1.0
        fig.update_xaxes(range=[-0.04 * hi, 1.3 * hi])
