"""Figures of the outcome reward model (engine/tasks/reward_from_data.py; pure: stored data in, plotly figure out)."""
from __future__ import annotations

import plotly.graph_objects as go

LAYOUT = dict(height=360, template="plotly_white", margin=dict(l=50, r=20, t=50, b=45))
LEGEND = dict(orientation="h", y=-0.3)


SELECTORS = (("oracle", "oracle (the golden metric)", "#2ca02c", "dash"), ("orm", "learned reward", "#d62728", "solid"),
             ("confidence", "policy confidence (mean log π)", "#1f77b4", "dashdot"))


def orm_bon_curve(metrics: dict) -> go.Figure:
    """Held-out best-of-N reward against N for each selection rule: the learned reward, the policy's own
    confidence (the baseline), the golden metric (oracle, the ceiling); N = 1 is the policy alone (the floor)."""
    curves = metrics.get("bon") or []
    ns = [c["n"] for c in curves]
    fig = go.Figure()
    for key, name, color, dash in SELECTORS:
        if curves and f"reward_{key}" in curves[0]:
            fig.add_trace(go.Scatter(x=ns, y=[c[f"reward_{key}"] for c in curves], mode="lines+markers",
                                     name=name, line=dict(color=color, dash=dash)))
    if curves:
        fig.add_trace(go.Scatter(x=[ns[0], ns[-1]], y=[curves[0]["reward_orm"]] * 2, mode="lines",
                                 name="no selection (N = 1)", line=dict(color="#7f7f7f", dash="dot")))
    fig.update_xaxes(type="log", title="N", tickvals=ns)
    fig.update_layout(title="best-of-N: learned reward vs confidence vs oracle", yaxis_title="held-out reward",
                      legend=LEGEND, **LAYOUT)
    return fig


def score_histogram(samples: list[dict], metrics: dict) -> go.Figure:
    """The ORM's reward r_ω (the logit) on held-out replies, right and wrong ones overlaid."""
    threshold = metrics.get("threshold", 0.5)
    rows = [r for r in samples if r.get("derived") is not None and r.get("reward") is not None]
    scores = [r["derived"] for r in rows] or [0.0]
    lo, hi = min(scores), max(scores)
    bins = dict(start=lo, end=hi + 1e-9, size=((hi - lo) or 1.0) / 30)   # the same bins for both classes
    fig = go.Figure()
    for name, right, color in (("right (E = 1)", True, "#2ca02c"), ("wrong (E = 0)", False, "#d62728")):
        xs = [r["derived"] for r in rows if (r["reward"] >= threshold) == right]
        fig.add_trace(go.Histogram(x=xs, name=f"{name}, {len(xs)} replies", opacity=0.6, marker_color=color,
                                   histnorm="percent", xbins=bins))
    auc = metrics.get("auc")
    fig.update_layout(barmode="overlay", xaxis_title="r_ω(x, y) (logit)", yaxis_title="% of the class",
                      title="ORM score of held-out replies" + (f" · AUC {auc:.2f}" if isinstance(auc, float) else ""),
                      legend=LEGEND, **LAYOUT)
    return fig
