"""About tab: the triangle and the equations behind each edge."""
from __future__ import annotations

import gradio as gr

from app import plots

TEXT = r"""
Three ways to adapt a language model π0 — an **in-context prompt** z, a **parameter update** (LoRA) and
a **reward model** r — and six conversions between them (Cai et al. 2024, arXiv 2406.16377), plus two ways
to use and build rewards (Sun et al. 2024).

**prompt → parameter (context distillation, §4).** Goal (Eq. 8): π*(y|x) = π0(y|x,z) for all x, y.
- Eq. 9: min over π of E_{x,y∼D} KL[π0(y|x,z) ‖ π(y|x)]; Eq. 10: max over π of E_{y∼π0(·|x,z)} log π(y|x).

**parameter → prompt (§5).** Find z with π0(·|x,z) ≈ π*(·|x): soft vectors or readable text.
- Eq. 12: min over z of E_{y∼π*} KL[π*(·|x,y<t) ‖ π0(·|x,z,y<t)]; Eq. 13: max over z of E_{y∼π*} log π0(y|x,z).

**reward → parameter (§2).** Eq. 1: max over π of E_{y∼π}[r(x,y)] − β KL[π(y|x) ‖ π0(y|x)] — RLOO with the
KL-shaped reward, or online DPO on the best and worst of k samples.

**parameter → reward (§3).** Eq. 4: r*(x,y) = log π*(y|x) − log π0(y|x). Eq. 7 steers a third policy while
decoding: log π2 ∝ log π1 + w·(log π* − log π0), w = 1/β (the slider on the Convert tab).

**prompt → reward (§6).** Eq. 14 (judge): r = Σ_s s·π0(s | grading prompt, x, y). Eq. 15 (contrastive):
r = log π0(y|x,z+) − log π0(y|x,z−). Bradley-Terry: a head on pooled hidden states, −log σ(r(y+) − r(y−)).

**reward → prompt (§7).** Eq. 16 (search): max over z of E_{y∼π0(·|x,z)}[r(x,y)]. Eq. 17 (conditioned):
max over π of E[log π(y | x, z(r(x,y)))] with a readable control prompt z(s) per reward level s.

**best-of-N (Sun et al. §3).** Keep the best of N samples by a reward; KL(π_BoN ‖ π) ≤ log N − (N−1)/N.

**reward model from data (Sun et al. §4.3).** Replies labelled right/wrong by a golden metric, E(y,y*) (Eq. 9),
train an outcome reward model r_ω = logit of R_ω (Eqs. 7–8): −E_{E=1}[log R_ω] − E_{E=0}[log(1 − R_ω)].

Metrics: KL(p‖q) = mean over (x,t) of Σ_v p(v|x,y<t)(log p − log q), exact over the vocabulary, in nats
per token, teacher-forced on held-out inputs; rewards are the scenario's reference reward over several
samples per held-out input.
"""


def build(lab) -> None:
    with gr.Row():
        gr.Markdown(TEXT)
        gr.Plot(plots.triangle(lab.edges()), show_label=False)
    gr.Dataframe([[e["edge"], e["title"], e["section"], "yes" if e["available"] else "not yet",
                   ", ".join(e["methods"])] for e in lab.tasks()],
                 headers=["edge or task", "what", "paper", "available", "methods"], interactive=False)
