"""A round trip drawn on the triangle: the path's arrows, each labelled with what is left after that hop
(KL to the original prompted behaviour and the reference reward). Pure: chain metrics in, a figure out."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from app.plot_style import TEMPLATE

VERTEX_XY = {"prompt": (0.0, 0.0), "parameter": (1.0, 0.0), "reward": (0.5, math.sqrt(3) / 2)}
HOP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def hop_label(i: int, hop: dict) -> str:
    """"1: KL 0.041 · r 0.71" — or the reward's agreement for a hop that ends at the reward vertex."""
    m = hop.get("metrics") or {}
    if m.get("kl_to_origin") is None:
        acc = m.get("pair_accuracy")
        return f"{i}: reward agrees {acc:.0%}" if isinstance(acc, (int, float)) else f"{i}: a reward"
    return f"{i}: KL {m['kl_to_origin']:.3f} · r {m['reward']:.2f}"


def _arrow_points(src: str, dst: str, lane: int) -> tuple[float, float, float, float]:
    """Start and end of an arrow between two vertices, shifted sideways by `lane` so repeated or opposite
    hops on one side of the triangle stay apart."""
    (x0, y0), (x1, y1) = VERTEX_XY[src], VERTEX_XY[dst]
    nx, ny = y1 - y0, x0 - x1
    norm = math.hypot(nx, ny) or 1.0
    off = 0.045 * (lane + 1)
    ox, oy = nx / norm * off, ny / norm * off
    return (x0 + ox + (x1 - x0) * 0.14, y0 + oy + (y1 - y0) * 0.14,
            x1 + ox - (x1 - x0) * 0.14, y1 + oy - (y1 - y0) * 0.14)


def chain_figure(path: list[str], hops: list[dict], origin: dict | None = None) -> go.Figure:
    """The triangle with the path's hops as numbered arrows; finished hops carry their numbers.

    Args:
        path: the vertices, e.g. ["prompt", "parameter", "prompt"].
        hops: finished hops so far, each {"edge", "metrics": {"kl_to_origin", "reward", ...}}.
        origin: {"reward", "kl_base_to_origin"} of the start, written under the prompt vertex.
    """
    fig = go.Figure()
    used: dict[frozenset, int] = {}
    for i, (src, dst) in enumerate(zip(path, path[1:])):
        side = frozenset((src, dst))
        lane, used[side] = used.get(side, 0), used.get(side, 0) + 1
        sx, sy, tx, ty = _arrow_points(src, dst, lane)
        done = i < len(hops)
        color = HOP_COLORS[i % len(HOP_COLORS)] if done else "#c7c7c7"
        fig.add_annotation(x=tx, y=ty, ax=sx, ay=sy, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=3, arrowwidth=3, arrowcolor=color)
        label = hop_label(i + 1, hops[i]) if done else f"{i + 1}: …"
        fig.add_annotation(x=(sx + tx) / 2, y=(sy + ty) / 2, text=label, showarrow=False,
                           font=dict(size=12, color=color), bgcolor="rgba(255,255,255,0.85)",
                           yshift=12 if sy + ty >= 0 else -12)
    _vertices(fig, path[0], origin)
    fig.update_xaxes(visible=False, range=[-0.35, 1.35])
    fig.update_yaxes(visible=False, range=[-0.3, 1.05], scaleanchor="x")
    fig.update_layout(height=420, margin=dict(l=0, r=0, t=30, b=0), template=TEMPLATE,
                      title=dict(text="after each hop: KL(π0(·|x,z) ‖ π_hop) and reward r", font=dict(size=14)))
    return fig


def _vertices(fig: go.Figure, start: str, origin: dict | None) -> None:
    for name, (x, y) in VERTEX_XY.items():
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", text=[name], textposition="middle center",
                                 marker=dict(size=78, color="#fff3d6" if name == start else "#f2f2f2",
                                             line=dict(color="#333", width=2)),
                                 showlegend=False, hoverinfo="skip"))
    if origin and isinstance(origin.get("reward"), (int, float)):
        x, y = VERTEX_XY[start]
        base = origin.get("kl_base_to_origin")
        note = f"start: r {origin['reward']:.2f}" + (f"<br>π0 alone: KL {base:.3f}" if base is not None else "")
        fig.add_annotation(x=x, y=y - 0.2, text=note, showarrow=False, font=dict(size=11, color="#555"))


def chain_bars(hops: list[dict], origin: dict | None = None) -> go.Figure:
    """KL to the origin after each hop, with π0 alone as the line a hop that kept nothing would reach."""
    xs = [f"{i + 1}: {h['edge']}" for i, h in enumerate(hops)]
    kls = [(h.get("metrics") or {}).get("kl_to_origin") for h in hops]
    fig = go.Figure(go.Bar(x=xs, y=[k if k is not None else 0 for k in kls],
                           text=[f"{k:.3f}" if k is not None else "reward" for k in kls], textposition="outside",
                           marker_color=[HOP_COLORS[i % len(HOP_COLORS)] for i in range(len(hops))]))
    if origin and origin.get("kl_base_to_origin") is not None:
        fig.add_hline(y=origin["kl_base_to_origin"], line_dash="dash", line_color="#7f7f7f",
                      annotation_text="π0 without the prompt")
    fig.update_layout(title="KL to the original prompted behaviour after each hop (nats/token)", height=300,
                      template=TEMPLATE, margin=dict(l=40, r=20, t=40, b=40))
    return fig


def path_of(hops: list[dict]) -> list[str]:
    """The vertices a list of hops walked, read off their edges ("prompt->parameter", ...)."""
    if not hops:
        return []
    return [hops[0]["edge"].split("->")[0]] + [h["edge"].split("->")[1] for h in hops]


def result_figures(metrics: dict) -> tuple[go.Figure, go.Figure]:
    """A stored chain run's two charts (Convert and History tabs)."""
    hops = metrics.get("hops") or []
    origin = {"reward": metrics.get("reward_origin"), "kl_base_to_origin": metrics.get("kl_base_to_origin")}
    return chain_figure(path_of(hops), hops, origin), chain_bars(hops, origin)
