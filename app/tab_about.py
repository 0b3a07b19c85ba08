"""About tab: the triangle and the equations behind each edge."""
from __future__ import annotations

import gradio as gr

from app import plots

TEXT = r"""
Three ways to adapt a language model π0 — an **in-context prompt** z, a **parameter update** (LoRA) and
a **reward model** r — and six conversions between them (Cai et al. 2024, arXiv 2406.16377).

**prompt → parameter (context distillation, §4).** Goal (Eq. 8): π*(y|x) = π0(y|x,z) for all x, y.
- Eq. 9: min over π of E_{x,y∼D} KL[π0(y|x,z) ‖ π(y|x)] — full next-token distributions at every reply token.
- Eq. 10: max over π of E_{x∼D, y∼π0(y|x,z)} log π(y|x) — imitation of the teacher's samples.

Metrics: KL(p‖q) = mean over (x,t) of Σ_v p(v|x,y<t)(log p − log q), exact over the vocabulary, in nats
per token, teacher-forced on held-out inputs with y sampled from the prompted teacher; reference reward of
base, teacher and student over several samples per held-out input.
"""


def build(lab) -> None:
    with gr.Row():
        gr.Markdown(TEXT)
        gr.Plot(plots.triangle(lab.edges()), show_label=False)
    gr.Dataframe([[e["edge"], e["title"], e["section"], "yes" if e["available"] else "not yet",
                   ", ".join(e["methods"])] for e in lab.edges()],
                 headers=["edge", "what", "paper", "available", "methods"], interactive=False)
