"""Figures of the outcome reward model (engine/tasks/reward_from_data.py; pure: stored data in, plotly figure out)."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.plot_style import TEMPLATE

LAYOUT = dict(height=360, template=TEMPLATE, margin=dict(l=50, r=20, t=50, b=45))
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


# ---------- learning from demonstrations (engine/tasks/sft.py, discriminator.py, adversarial_imitation.py) ----------
def _bars(items: list[tuple[str, float]], title: str, yaxis: str, colors: list[str]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[n for n, _ in items], y=[v for _, v in items], marker_color=colors[:len(items)],
                           text=[f"{v:.3f}" for _, v in items], textposition="outside"))
    fig.update_layout(title=title, yaxis_title=yaxis, **LAYOUT)
    return fig


def demonstration_bars(metrics: dict) -> go.Figure:
    """The reference reward (never trained on) of π0 and of the policy learned from demonstrations; for
    adversarial imitation beside it the reward it maximized, r_ω of the last discriminator (Eq. 7)."""
    keys = (("π0", ("reward_base", "reference_reward_before")), ("learned", ("reward_sft", "reference_reward_after")))
    items = [(name, metrics[k]) for name, options in keys for k in options if isinstance(metrics.get(k), float)]
    d_items = [(n, metrics[k]) for n, k in (("π0", "discriminator_reward_before"),
                                            ("learned", "discriminator_reward_after")) if isinstance(metrics.get(k), float)]
    if not d_items:
        return _bars(items, "held-out reference reward", "mean reward", ["#7f7f7f", "#d62728"])
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.18,
                        subplot_titles=["reference reward<br>(never trained on)", "r_ω of the last D<br>(Eq. 7, maximized)"])
    for col, panel in enumerate((items, d_items), start=1):
        fig.add_trace(go.Bar(x=[n for n, _ in panel], y=[v for _, v in panel], marker_color=["#7f7f7f", "#d62728"],
                             text=[f"{v:.3f}" for _, v in panel], textposition="inside", showlegend=False),
                      row=1, col=col)
    fig.update_annotations(font_size=12)
    fig.update_layout(title="held-out replies: π0 and the learned policy", **(LAYOUT | {"margin": dict(l=50, r=20, t=90, b=45)}))
    return fig


def demonstration_fit(metrics: dict) -> go.Figure:
    """SFT: the held-out demonstrations' NLL before and after; adversarial: D_ω's accuracy round by round."""
    if metrics.get("rounds"):
        rounds = metrics["rounds"]
        fig = go.Figure(go.Scatter(x=[r["round"] for r in rounds], y=[r["d_accuracy"] for r in rounds],
                                   mode="lines+markers", name="D_ω train accuracy"))
        fig.add_hline(y=0.5, line_dash="dot", annotation_text="chance: the policy passes for the expert")
        fig.update_layout(title="discriminator accuracy per round (Eq. 6)", xaxis_title="round",
                          yaxis_title="accuracy", **LAYOUT)
        return fig
    items = [(n, metrics[k]) for n, k in (("π0", "nll_before"), ("SFT", "nll_after")) if isinstance(metrics.get(k), float)]
    return _bars(items, "held-out demonstrations: −log π(y*|x) per token", "nats/token", ["#7f7f7f", "#d62728"])


def discriminator_bars(metrics: dict) -> go.Figure:
    """How well D_ω tells the held-out demonstrations from the policy's replies, and how far its reward agrees
    with the reference reward it never saw."""
    names = ("heldout_accuracy", "heldout_auc", "agreement_pair_accuracy", "agreement_spearman")
    items = [(n, metrics[n]) for n in names if isinstance(metrics.get(n), float)]
    return _bars(items, "discriminator (Eqs. 6–7), held out", "", ["#1f77b4"] * 4)
