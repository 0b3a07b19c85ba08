"""Plot builders: pure functions from stored data to plotly figures (no I/O, no torch)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import plots_chain
from app import plots_parameter_prompt as ppz
from app import plots_reward_from_data as prd
from app import plots_reward_parameter as prp
from app import plots_reward_prompt as prz
from app.plot_style import TEMPLATE, headroom, placeholder, wrapped

CURVES = (("loss", "training loss"), ("kl_heldout", "held-out KL (nats/token)"), ("reward", "held-out reward"))
CURVES_BY_EDGE = {
    "reward->parameter": (("loss", "training loss"), ("kl_to_base", "held-out KL(π ‖ π0) (nats/token)"),
                          ("reward", "held-out reward"),
                          ("signal", "reward signal (inputs whose replies differ)")),
    "best-of-n": (("reward", "held-out reward vs N"), ("kl_bound", "KL bound vs N (nats per reply)")),
    "parameter->prompt": (("loss", "soft: training loss"), ("kl_heldout", "soft: held-out KL(π* ‖ π0(·|x,z))"),
                          ("kl_train_best", "discrete: best KL to π* so far, per prompt scored")),
    "chain": (("kl_to_origin", "KL to the origin after each hop"), ("reward", "reward after each hop")),
    "reward->prompt": prz.CURVES,
    "reward-model": (("loss", "head training loss (Sun et al. Eq. 8, or Eq. 6 for the discriminator)"),),
    "demonstrations": (("loss", "training loss"), ("reward", "held-out reward"),
                       ("nll_heldout", "held-out −log π(y*|x) per token")),
    # a method whose curves are not its edge's: (edge, method)
    ("demonstrations", "adversarial"): (("loss", "RLOO loss on r_ω (Eq. 5)"), ("reward", "held-out reward"),
                                        ("reference_reward", "reference reward of the replies D_ω is refitted on"),
                                        ("d_accuracy", "D_ω train accuracy per refit (Eq. 6)")),
}
POLICY_COLORS = {"base": "#7f7f7f", "teacher": "#1f77b4", "student": "#d62728"}
VERTEX_XY = {"prompt": (0.0, 0.0), "parameter": (1.0, 0.0), "reward": (0.5, math.sqrt(3) / 2)}


def training_curves(points: list[dict], edge: str | None = None, empty: str = "", method: str | None = None) -> go.Figure:
    """Loss, held-out KL and reward against the optimizer step, one panel each (the method, else its edge, picks
    which); without points and with `empty` given, a chart that says so instead of blank axes."""
    if not points and empty:
        return placeholder(empty)
    curves = CURVES_BY_EDGE.get((edge, method)) or CURVES_BY_EDGE.get(edge, CURVES)
    fig = make_subplots(rows=1, cols=len(curves), subplot_titles=[wrapped(t, 22) for _, t in curves],
                        horizontal_spacing=0.08)
    df = pd.DataFrame(points or [], columns=["name", "step", "value"])
    for col, (name, _) in enumerate(curves, start=1):
        d = df[df["name"] == name]
        fig.add_trace(go.Scatter(x=d["step"], y=d["value"], mode="lines+markers", name=name,
                                 showlegend=False), row=1, col=col)
        fig.update_xaxes(title_text="N" if edge == "best-of-n" else "step", row=1, col=col)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=300, margin=dict(l=40, r=20, t=56, b=40), template=TEMPLATE)
    return fig


def reward_bars(metrics: dict) -> go.Figure:
    """Mean held-out reward of base, teacher (π0 with z) and student (π0 with the adapter)."""
    names = [("base", "reward_base"), ("teacher", "reward_teacher"), ("student", "reward_student")]
    present = [(n, metrics[k]) for n, k in names if metrics.get(k) is not None]
    fig = go.Figure(go.Bar(x=[n for n, _ in present], y=[v for _, v in present],
                           marker_color=[POLICY_COLORS[n] for n, _ in present],
                           text=[f"{v:.3f}" for _, v in present], textposition="outside"))
    fig.update_layout(title="held-out reward by policy", height=300, template=TEMPLATE,
                      margin=dict(l=40, r=20, t=40, b=40), yaxis_title="mean reward")
    headroom(fig, [v for _, v in present])
    return fig


def kl_bars(metrics: dict, title: str = "KL to the prompted teacher (nats/token)") -> go.Figure:
    """KL(π0(·|x,z) ‖ π) before (π = base) and after (π = student) training."""
    items = [(k.replace("kl_", ""), metrics[k]) for k in ("kl_before", "kl_after") if metrics.get(k) is not None]
    fig = go.Figure(go.Bar(x=[n for n, _ in items], y=[v for _, v in items], marker_color=["#7f7f7f", "#d62728"][:len(items)],
                           text=[f"{v:.4f}" for _, v in items], textposition="outside"))
    fig.update_layout(title=title, height=300, template=TEMPLATE,
                      margin=dict(l=40, r=20, t=40, b=40))
    headroom(fig, [v for _, v in items])
    return fig


def triangle(edges: list[dict], selected: str | None = None) -> go.Figure:
    """The triangle of vertices with its six edges; built edges solid, the selected one bold."""
    fig = go.Figure()
    for e in edges:
        (x0, y0), (x1, y1) = VERTEX_XY[e["from"]], VERTEX_XY[e["to"]]
        # offset the two directions of one side so both arrows show
        dx, dy = y1 - y0, x0 - x1
        norm = math.hypot(dx, dy) or 1
        off = 0.035
        ox, oy = dx / norm * off, dy / norm * off
        sx, sy, tx, ty = x0 + ox + (x1 - x0) * 0.12, y0 + oy + (y1 - y0) * 0.12, x1 + ox - (x1 - x0) * 0.12, y1 + oy - (y1 - y0) * 0.12
        color = "#d62728" if e["edge"] == selected else ("#1f77b4" if e["available"] else "#c7c7c7")
        fig.add_annotation(x=tx, y=ty, ax=sx, ay=sy, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowwidth=4 if e["edge"] == selected else 2, arrowcolor=color)
    for name, (x, y) in VERTEX_XY.items():
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", text=[name], textposition="middle center",
                                 marker=dict(size=70, color="#f2f2f2", line=dict(color="#333", width=2)),
                                 showlegend=False, hoverinfo="skip"))
    fig.update_xaxes(visible=False, range=[-0.2, 1.2])
    fig.update_yaxes(visible=False, range=[-0.2, 1.08], scaleanchor="x")
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=10, b=0), template=TEMPLATE)
    return fig


def derived_vs_reference(samples: list[dict]) -> go.Figure:
    """Scatter of a derived reward against the scenario's reference reward, one point per output."""
    rows = [r for r in samples if r.get("derived") is not None and r.get("reward") is not None]
    fig = go.Figure()
    for policy in sorted({r["policy"] for r in rows}):
        pts = [r for r in rows if r["policy"] == policy]
        fig.add_trace(go.Scatter(x=[r["reward"] for r in pts], y=[r["derived"] for r in pts], mode="markers",
                                 name=policy, text=[r["output"][:80] for r in pts], opacity=0.7))
    fig.update_layout(title="derived reward vs reference reward", height=320, template=TEMPLATE,
                      xaxis_title="reference reward", yaxis_title="derived reward",
                      margin=dict(l=40, r=20, t=40, b=40))
    return fig


def metric_bars(metrics: dict, names: tuple[str, ...], title: str) -> go.Figure:
    items = [(n, metrics[n]) for n in names if isinstance(metrics.get(n), (int, float))]
    fig = go.Figure(go.Bar(x=[n for n, _ in items], y=[v for _, v in items],
                           text=[f"{v:.3f}" for _, v in items], textposition="outside"))
    fig.update_layout(title=title, height=300, template=TEMPLATE, margin=dict(l=40, r=20, t=40, b=40))
    headroom(fig, [v for _, v in items])
    return fig


def result_figures(edge: str, metrics: dict, samples: list[dict]) -> tuple[go.Figure, go.Figure]:
    """The two result charts of a finished run, chosen by its edge."""
    if edge == "prompt->reward":
        return (metric_bars(metrics, ("pair_accuracy", "spearman"), "agreement with the reference reward"),
                derived_vs_reference(samples))
    if edge == "reward->parameter":
        return prp.rl_bars(metrics), kl_bars({"kl_after": metrics.get("kl_to_base")}, "KL(π ‖ π0) after training")
    if edge == "parameter->reward":
        return (prp.steering_bars(metrics),
                metric_bars(metrics, ("pair_accuracy", "gap_closed"), "r* agreement and steering gap closed"))
    if edge == "best-of-n":
        return prp.bon_curve(metrics.get("results") or []), kl_bound_bars(metrics.get("results") or [])
    if edge == "reward-model" and "heldout_accuracy" in metrics:   # the discriminator (Sun et al. §4.2)
        return prd.discriminator_bars(metrics), derived_vs_reference(samples)
    if edge == "reward-model":
        return prd.orm_bon_curve(metrics), prd.score_histogram(samples, metrics)
    if edge == "demonstrations":
        return prd.demonstration_bars(metrics), prd.demonstration_fit(metrics)
    if edge == "parameter->prompt":
        return ppz.result_figures(metrics)
    if edge == "chain":
        return plots_chain.result_figures(metrics)
    if edge == "reward->prompt":
        return prz.reward_prompt_figures(metrics, samples)
    return reward_bars(metrics), kl_bars(metrics)


def kl_bound_bars(results: list[dict]) -> go.Figure:
    """Best-of-N's KL bound log N − (N−1)/N for each N (nats per reply)."""
    fig = go.Figure(go.Bar(x=[f"N={r['n']}" for r in results], y=[r["kl_bound"] for r in results],
                           text=[f"{r['kl_bound']:.2f}" for r in results], textposition="outside"))
    fig.update_layout(title="KL(π_BoN ‖ π) ≤ log N − (N−1)/N", height=300, template=TEMPLATE,
                      margin=dict(l=40, r=20, t=40, b=40))
    return fig
