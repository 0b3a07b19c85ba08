"""Sun et al.'s Table 1 as a chart: the task metric against the compute each strategy cost (pure: rows in,
plotly figure out)."""
from __future__ import annotations

import plotly.graph_objects as go

from app.plot_style import TEMPLATE

LEVER_COLORS = {"θ": "#d62728", "ψ": "#1f77b4", "L": "#2ca02c", "none": "#7f7f7f"}


def lever(row: dict) -> str:
    """Which of the three levers a single strategy moves (θ fine-tuning, ψ the prompter, L inference samples)."""
    if row["theta"] == "optimized":
        return "θ"
    if row["psi"] == "optimized":
        return "ψ"
    return "L" if row["L"] > 1 else "none"


SHORT = {"zero-shot": "0-shot", "few-shot": "ICL", "prompt-search": "ψ*", "sft": "SFT", "rl-golden": "RL",
         "rl-learned-rm": "RL·RM", "adversarial-imitation": "AIL"}
POSITIONS = ("top center", "bottom center", "middle right", "middle left")


def short_label(strategy: str) -> str:
    """A point's label on the chart: `sft+bon-learned-rm-16` → `SFT+BoN16`, best-of-N by the golden metric
    starred (`bon-golden-4` → `BoN4★`); the full names are in the hover and the table."""
    parts = []
    for part in strategy.split("+"):
        if part.startswith("bon-"):
            n = part.rsplit("-", 1)[1]
            parts.append(f"BoN{n}" + ("★" if part.startswith("bon-golden") else ""))
        else:
            parts.append(SHORT.get(part, part))
    return "+".join(parts)


def label_positions(rows: list[dict]) -> dict[str, str]:
    """Where each label sits: neighbours along the compute axis take turns above, below, right and left, so
    points clustered at one compute keep readable labels."""
    order = sorted(rows, key=lambda r: (r["forward_tokens"], r["metric"]))
    return {r["strategy"]: POSITIONS[i % len(POSITIONS)] for i, r in enumerate(order)}


def metric_vs_compute(rows: list[dict], metric_name: str = "metric") -> go.Figure:
    """One point per strategy: forward tokens (log scale) against the metric ± its standard error; single
    levers coloured by lever, joint strategies as open diamonds."""
    fig = go.Figure()
    where = label_positions(rows)
    for joint in (False, True):
        pts = [r for r in rows if bool(r.get("joint")) == joint]
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[r["forward_tokens"] for r in pts], y=[r["metric"] for r in pts], mode="markers+text",
            text=[short_label(r["strategy"]) for r in pts], customdata=[r["strategy"] for r in pts],
            textposition=[where[r["strategy"]] for r in pts], textfont=dict(size=10),
            error_y=dict(type="data", array=[r["stderr"] for r in pts], thickness=1),
            marker=dict(size=11, symbol="diamond-open" if joint else "circle",
                        color=[LEVER_COLORS[lever(r)] for r in pts], line=dict(width=2)),
            name="joint (two or more levers)" if joint else "one lever",
            hovertemplate="%{customdata}: %{y:.3f} at %{x:,} tokens<extra></extra>"))
    fig.update_xaxes(type="log", title="compute: forward tokens (training + answering)")
    fig.update_layout(title=f"{metric_name} vs compute · colour: the lever (θ red, ψ blue, L green) · "
                            "★ selected by the golden metric",
                      yaxis_title=metric_name, height=440, template=TEMPLATE,
                      margin=dict(l=50, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.2))
    return fig
