"""About tab: the triangle and the equations behind each edge."""
from __future__ import annotations

import gradio as gr

from app import plots
from app.equations import LATEX_DELIMITERS

TEXT = r"""
Three ways to adapt a language model $\pi_0$ — an **in-context prompt** $z$, a **parameter update** (LoRA) and
a **reward model** $r$ — and six conversions between them (Cai et al. 2024, arXiv 2406.16377), plus ways to use
and build rewards (Sun et al. 2024).

**prompt → parameter (context distillation, §4).** Goal (Eq. 8): $\pi^*(y\mid x) = \pi_0(y\mid x,z)$ for all $x, y$.
- Eq. 9: $\min_{\pi}\ \mathbb{E}_{x,y\sim\mathcal{D}}\ \mathbb{D}_{\mathrm{KL}}\big[\pi_0(y\mid x,z)\,\|\,\pi(y\mid x)\big]$;
  Eq. 10: $\max_{\pi}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi_0(y\mid x,z)}\ \log\pi(y\mid x)$ (printed without the log).

**parameter → prompt (§5).** Find $z$ with $\pi_0(y\mid x,z) = \pi^*(y\mid x)$ (Eq. 11): soft vectors or readable text.
- Eq. 12: $\min_{z}\ \mathbb{E}_{(x,y)\sim\mathcal{D}}\ \mathbb{D}_{\mathrm{KL}}\big[\pi_0(y\mid x,z)\,\|\,\pi^*(y\mid x)\big]$
  (the lab's default swaps the arguments: $\mathbb{D}_{\mathrm{KL}}[\pi^*\,\|\,\pi_0(\cdot\mid x,z)]$, the KL it reports);
  Eq. 13: $\max_{z}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi^*(y\mid x)}\ \log\pi_0(y\mid x,z)$.

**reward → parameter (§2).** Eq. 1: $\max_{\pi}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi(y\mid x)}\big[r(x,y)\big] -
\beta\,\mathbb{D}_{\mathrm{KL}}\big[\pi(y\mid x)\,\|\,\pi_0(y\mid x)\big]$ — RLOO with the KL-shaped reward, or online
DPO (and SimPO) on the best and worst of $k$ samples.

**parameter → reward (§3).** Eq. 4: $r^*(x,y) = \log\frac{\pi^*(y\mid x)}{\pi_0(y\mid x)}$. Eq. 7 steers a third
policy while decoding: $\log\pi_2(y_t\mid x,y_{<t}) \propto \log\pi_1(y_t\mid x,y_{<t}) + \frac{1}{\beta}\big(\log\pi^*(y_t\mid x,y_{<t}) -
\log\pi_0(y_t\mid x,y_{<t})\big)$, with $w = 1/\beta$ the slider on the Convert tab.

**prompt → reward (§6).** Eq. 14 (judge): $r(x,y) = \pi_0(s\mid x,y,z)$ for the verbalized score $s$ under a
grading prompt $z$ (the lab takes the expected score $\sum_s s\,\pi_0(s\mid x,y,z)$). Eq. 15 (contrastive):
$R(x,y) = \log\frac{\pi_0(y\mid x,z^+)}{\pi_0(y\mid x,z^-)}$. Bradley-Terry: a head on pooled hidden states,
$-\log\sigma\big(r(x,y^+) - r(x,y^-)\big)$.

**reward → prompt (§7).** Eq. 16 (search): $\max_{z}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi_0(\cdot\mid x,z)}\big[r(x,y)\big]$.
Eq. 17 (conditioned): $\max_{\pi,z}\ \mathbb{E}_{(x,y)\sim\mathcal{D}}\Big[\pi\big(y\mid x,z(r(x,y))\big)\Big]$ with a
readable control prompt $z(s)$ per reward level $s$, measured by $\hat r(x,y,s) = -\lvert s - r(x,y)\rvert$ (Eq. 18).

**best-of-N (Sun et al. §3).** Keep the best of $N$ samples by a reward;
$\mathbb{D}_{\mathrm{KL}}[\pi_{\mathrm{BoN}}\,\|\,\pi] \le \log N - \frac{N-1}{N}$.

**reward model from data (Sun et al. §4.3).** Replies labelled right or wrong by a golden metric,
$\mathcal{E}(y,y^*)\in\{0,1\}$ (Eq. 9), train an outcome reward model $R_\omega = \sigma(r_\omega)$ (Eq. 8, its sign
slip corrected): $\mathcal{L}(\omega) = -\mathbb{E}_{i\mid\mathcal{E}=1}\big[\log R_\omega(x_i,y_i)\big] -
\mathbb{E}_{i\mid\mathcal{E}=0}\big[\log(1 - R_\omega(x_i,y_i))\big]$.

**demonstrations (Sun et al. §3.1.1, §4.2).** SFT on them, or a discriminator
$\max_\omega\ \mathbb{E}_{\mathcal{D}_{\mathrm{demo}}}[\log D_\omega(y\mid x)] + \mathbb{E}_{\pi}[\log(1 - D_\omega(y\mid x))]$
(Eq. 6) whose logit $r_\omega = \log D_\omega - \log(1 - D_\omega)$ (Eq. 7) is a reward; adversarial imitation
alternates it with $\max_\pi\ \mathbb{E}_\pi[r_\omega]$ (Eq. 5).

Metrics: $\mathrm{KL}(p\,\|\,q) = \operatorname{mean}_{(x,t)} \sum_v p(v\mid x,y_{<t})\big(\log p(v\mid x,y_{<t}) -
\log q(v\mid x,y_{<t})\big)$, exact over the vocabulary, in nats per token, teacher-forced on held-out inputs;
rewards are the scenario's reference reward over several samples per held-out input.
"""


def build(lab) -> None:
    with gr.Row():
        gr.Markdown(TEXT, latex_delimiters=LATEX_DELIMITERS, elem_id="about-text")
        gr.Plot(plots.triangle(lab.edges()), show_label=False)
    gr.Dataframe([[e["edge"], e["title"], e["section"], "yes" if e["available"] else "not yet",
                   ", ".join(e["methods"])] for e in lab.tasks()],
                 headers=["edge or task", "what", "paper", "available", "methods"], interactive=False)
