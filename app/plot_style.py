"""One look for every chart, readable in Gradio's light and dark themes, and the chart that stands in for none.

Plotly draws its own colours, so a chart cannot follow the page's theme by itself: the "lab" template makes the
background transparent and the grid mid-grey (legible on white and on near-black), and the page's CSS (app/main.py:
CHART_CSS) gives axis labels, titles and legends the theme's text colour.
"""
from __future__ import annotations

import textwrap

import plotly.graph_objects as go
import plotly.io as pio

GRID = "rgba(128,128,128,0.28)"
_AXIS = dict(gridcolor=GRID, zerolinecolor="rgba(128,128,128,0.55)", linecolor=GRID)
pio.templates["lab"] = go.layout.Template(layout=dict(
    paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font=dict(color="#808080"),
    xaxis=_AXIS, yaxis=_AXIS, legend=dict(bgcolor="rgba(0,0,0,0)")))
TEMPLATE = "plotly_white+lab"   # plotly_white's fonts and colourway, the lab's background and grid


def wrapped(text: str, width: int = 24) -> str:
    """Text in lines of at most `width` characters (plotly's <br>), so a title fits a phone's narrow panel."""
    return "<br>".join(textwrap.wrap(text, width))


def placeholder(text: str, height: int = 180) -> go.Figure:
    """An empty chart that says why it is empty (no run yet, no point yet) instead of showing blank axes."""
    fig = go.Figure()
    fig.add_annotation(text=wrapped(text, 34), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font=dict(size=15))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), template=TEMPLATE)
    return fig


def headroom(fig: go.Figure, values: list) -> None:
    """Leave room above (and below) the bars for their value labels (textposition="outside" is clipped at the
    axis otherwise); values that are not numbers are ignored."""
    values = [v for v in values if isinstance(v, (int, float))]
    if values:
        lo, hi = min(0.0, min(values)), max(0.0, max(values))
        pad = 0.15 * ((hi - lo) or 1.0)
        fig.update_yaxes(range=[lo - (pad if lo < 0 else 0), hi + pad])
