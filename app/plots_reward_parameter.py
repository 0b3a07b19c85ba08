"""Figures of the reward ⇄ parameter edges and best-of-N (pure: stored data in, plotly figure out)."""
from __future__ import annotations

import html

import plotly.graph_objects as go

from app.plot_style import TEMPLATE, headroom

LAYOUT = dict(height=320, template=TEMPLATE, margin=dict(l=50, r=20, t=50, b=45))


def rl_bars(metrics: dict) -> go.Figure:
    """Held-out reward of π0 and of the trained adapter, with the KL it cost."""
    names = [("π0 (before)", metrics.get("reward_before")), ("adapter (after)", metrics.get("reward_after"))]
    if "reference_reward_after" in metrics:
        names += [("reference r, before", metrics["reference_reward_before"]),
                  ("reference r, after", metrics["reference_reward_after"])]
    names = [(n, v) for n, v in names if isinstance(v, (int, float))]
    fig = go.Figure(go.Bar(x=[n for n, _ in names], y=[v for _, v in names], text=[f"{v:.3f}" for _, v in names],
                           textposition="outside", marker_color=["#7f7f7f", "#d62728", "#bbbbbb", "#ff9896"][:len(names)]))
    kl = metrics.get("kl_to_base")
    title = "held-out reward" + (f" · KL to π0 {kl:.3f} nats/token" if isinstance(kl, (int, float)) else "")
    fig.update_layout(title=title, yaxis_title="mean reward", **LAYOUT)
    headroom(fig, [v for _, v in names])
    return fig


def steering_bars(metrics: dict) -> go.Figure:
    """Mean reference reward of π0, π*, π1 and the steered π2 (and π1's own scenario reward, if any)."""
    keys = [("π0", "reward_pi0"), ("π*", "reward_star"), ("π1", "reward_pi1"), ("π2 steered", "reward_steered")]
    fig = go.Figure(go.Bar(name="scenario reward", x=[n for n, _ in keys], y=[metrics.get(k) for _, k in keys],
                           text=[_fmt(metrics.get(k)) for _, k in keys], textposition="outside"))
    other = sorted({k.rsplit("_reward_", 1)[0] for k in metrics if "_reward_" in k and not k.startswith("reward")})
    for name in other:
        ys = [metrics.get(f"{name}_reward_{k}") for k in ("pi0", "star", "pi1", "steered")]
        fig.add_trace(go.Bar(name=f"{name} reward", x=[n for n, _ in keys], y=ys, text=[_fmt(v) for v in ys],
                             textposition="outside"))
    gap = metrics.get("gap_closed")
    fig.update_layout(title="reward by policy" + (f" · gap closed {gap:.2f}" if isinstance(gap, float) else ""),
                      barmode="group", **LAYOUT)
    headroom(fig, [y for trace in fig.data for y in trace.y])
    return fig


def bon_curve(results: list[dict]) -> go.Figure:
    """Best-of-N: held-out reference reward against N (log scale)."""
    fig = go.Figure(go.Scatter(x=[r["n"] for r in results], y=[r["reward"] for r in results], mode="lines+markers"))
    fig.update_xaxes(type="log", title="N", tickvals=[r["n"] for r in results])
    fig.update_layout(title="best-of-N: reward vs N", yaxis_title="held-out reward", **LAYOUT)
    return fig


# a colour-blind-safe diverging pair (blue / orange, as in ColorBrewer's PuOr and Tableau's diverging palette):
# no red against green
PREFERS_STAR, PREFERS_BASE = "33,102,172", "230,97,1"


def token_html(rows: list[dict], limit: int = 6) -> str:
    """Replies with each token coloured by its log-ratio log π*(y_t|·) − log π0(y_t|·) and the number printed under
    it (readable without hovering, on a touch screen): blue where π* likes the token more than π0, orange where
    less."""
    shown = [r for r in rows if r.get("token_log_ratios")][:limit]
    if not shown:
        return ""
    scale = max(max(abs(v) for v in r["token_log_ratios"]) for r in shown) or 1.0
    parts = ["<div class='lab-tokens' style='font-size:0.9em'><b>Per-token view of r* = log π*/π0</b> — "
             f"<span style='background:rgba({PREFERS_STAR},0.5);padding:0 4px'>blue</span>: π* prefers the token, "
             f"<span style='background:rgba({PREFERS_BASE},0.5);padding:0 4px'>orange</span>: π0 does; the number "
             "under each token is its log π*(y_t|·) − log π0(y_t|·) in nats."]
    for r in shown:
        spans = "".join(_token_span(t, v, scale) for t, v in zip(r["tokens"], r["token_log_ratios"]))
        parts.append(f"<p><code>{html.escape(r['policy'])}</code> · {html.escape(r['input'])}<br>{spans} "
                     f"<small>(r* = {r['log_ratio']:.2f})</small></p>")
    return "".join(parts) + "</div>"


def _token_span(token: str, value: float, scale: float) -> str:
    """One token over its value, shaded by |value| relative to the largest shown."""
    a = min(abs(value) / scale, 1.0)
    rgb = PREFERS_STAR if value > 0 else PREFERS_BASE
    text = html.escape(token.replace("\n", "↵")) or "&nbsp;"
    return (f"<span class='lab-token' title='{value:+.2f}' style='display:inline-block;text-align:center;"
            f"margin:0 1px 4px 0;padding:0 2px;border-radius:3px;background:rgba({rgb},{0.6 * a:.2f})'>"
            f"<span style='white-space:pre'>{text}</span><br><small style='font-size:0.72em'>{value:+.2f}</small>"
            "</span>")


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else ""
