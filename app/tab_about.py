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

**prompt → reward (§6).**
- Eq. 14 (judge): r(x,y) = Σ_s s · π0(s | grading prompt, x, y) over the score tokens 1…9 (G-Eval).
- Eq. 15 (contrastive): r(x,y) = log π0(y|x,z+) − log π0(y|x,z−).
- Bradley-Terry: pairs y+ ∼ π0(·|x,z+), y− ∼ π0(·|x,z−) (RLCD) train a linear head on pooled hidden
  states with −log σ(r(x,y+) − r(x,y−)).
Reported: pair accuracy and Spearman against the scenario's reference reward on held-out samples.

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
