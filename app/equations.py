"""Every registered method's equation as LaTeX, for the page (Gradio Markdown renders it with KaTeX).

The registrations keep their plain-text `equation` (the CLI prints it); this table is how the page shows it.
Each entry is checked against the paper it cites: Cai et al. 2024 (arXiv 2406.16377, "Eq. n") and Sun et al.
2024 ("Sun et al. Eq. n"). Where the lab departs from the printed equation, the entry says how.
A method missing here falls back to its plain text (tests/test_views.py checks that none is missing).
"""
from __future__ import annotations

# Gradio Markdown's delimiters: $$…$$ a displayed equation, $…$ inline
LATEX_DELIMITERS = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]

KL = r"\mathbb{D}_{\mathrm{KL}}"
DEMO = r"\mathcal{D}_{\mathrm{demo}}"
EQ6 = (rf"$\max_{{\omega}}\ \mathbb{{E}}_{{(y|x)\sim {DEMO}}}\big[\log D_\omega(y\mid x)\big]"
       r" + \mathbb{E}_{(y|x)\sim\pi}\big[\log(1 - D_\omega(y\mid x))\big]$")
EQ5 = r"$\max_{\pi}\ \mathbb{E}_{(y|x)\sim\pi}\big[\log D_\omega(y\mid x) - \log(1 - D_\omega(y\mid x))\big]$"

LATEX: dict[tuple[str, str], str] = {
    ("prompt->parameter", "kl"):
        rf"$\min_{{\pi}}\ \mathbb{{E}}_{{x,y\sim\mathcal{{D}}}}\ {KL}\big[\pi_0(y\mid x,z)\,\|\,\pi(y\mid x)\big]$"
        " (Eq. 9), per token over the full next-token distributions",
    ("prompt->parameter", "imitation"):
        r"$\max_{\pi}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi_0(y\mid x,z)}\ \log\pi(y\mid x)$"
        r" (Eq. 10, printed there as $\pi(y\mid x)$: the lab maximizes its log, per token)",
    ("parameter->prompt", "soft"):
        rf"$\min_{{z}}\ \mathbb{{E}}_{{x,\,y\sim\pi^*}}\ {KL}\big[\pi^*(y\mid x)\,\|\,\pi_0(y\mid x,z)\big]$"
        rf" (objective `kl`: Eq. 12 with its arguments swapped, the KL the lab reports); `reverse-kl` is Eq. 12 as"
        rf" printed, ${KL}\big[\pi_0(y\mid x,z)\,\|\,\pi^*(y\mid x)\big]$; `imitation` is Eq. 13,"
        r" $\max_z\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi^*(y\mid x)}\ \log\pi_0(y\mid x,z)$",
    ("parameter->prompt", "discrete"):
        rf"$\min_{{z\ \text{{readable}}}}\ \mathbb{{E}}_{{x,\,y\sim\pi^*}}\ {KL}\big[\pi^*(y\mid x)\,\|\,"
        r"\pi_0(y\mid x,z)\big]$ (Eq. 12 with its arguments swapped, as `soft`'s default)",
    ("reward->parameter", "rloo"):
        r"$\max_{\pi}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi(y\mid x)}\big[r(x,y)\big]"
        rf" - \beta\,{KL}\big[\pi(y\mid x)\,\|\,\pi_0(y\mid x)\big]$ (Eq. 1), by RLOO: "
        r"$R_i = r(x,y_i) - \beta\log\frac{\pi(y_i\mid x)}{\pi_0(y_i\mid x)}$, "
        r"$A_i = R_i - \frac{1}{k-1}\sum_{j\ne i} R_j$",
    ("reward->parameter", "dpo"):
        r"$\min_{\pi}\ -\log\sigma\Big(\beta\Big[\log\frac{\pi(y_w\mid x)}{\pi_0(y_w\mid x)}"
        r" - \log\frac{\pi(y_l\mid x)}{\pi_0(y_l\mid x)}\Big]\Big)$, $y_w$ and $y_l$ the best and worst of $k$"
        " samples by $r$ (Eq. 1's implicit form, Rafailov et al. 2023)",
    ("reward->parameter", "simpo"):
        r"$\min_{\pi}\ -\log\sigma\Big(\frac{\beta}{|y_w|}\log\pi(y_w\mid x) - \frac{\beta}{|y_l|}\log\pi(y_l\mid x)"
        r" - \gamma\Big)$ (SimPO, Meng et al. 2024, Eq. 6)",
    ("parameter->reward", "log-ratio"):
        r"$r^*(x,y) = \log\frac{\pi^*(y\mid x)}{\pi_0(y\mid x)}$ (Eq. 4); steering "
        r"$\log\pi_2(y_t\mid x,y_{<t}) \propto \log\pi_1(y_t\mid x,y_{<t}) + w\big(\log\pi^*(y_t\mid x,y_{<t})"
        r" - \log\pi_0(y_t\mid x,y_{<t})\big)$, $w = 1/\beta$ (Eq. 7)",
    ("prompt->reward", "contrastive"):
        r"$R(x,y) = \log\frac{\pi_0(y\mid x,z^+)}{\pi_0(y\mid x,z^-)}$ (Eq. 15)",
    ("prompt->reward", "judge"):
        r"$r(x,y) = \sum_{s=1}^{9} s\ \pi_0(s\mid x,y,z)$, $z$ the grading prompt (Eq. 14 reads the verbalized"
        r" score $s$ off $\pi_0(s\mid x,y,z)$; the lab takes its expectation, $\pi_0$ renormalized over the nine"
        " score tokens)",
    ("prompt->reward", "bradley-terry"):
        r"$y^+\sim\pi_0(\cdot\mid x,z^+)$, $y^-\sim\pi_0(\cdot\mid x,z^-)$ (or a file of pairs); "
        r"$\min_\omega\ -\sum\log\sigma\big(r_\omega(x,y^+) - r_\omega(x,y^-)\big)$ (Bradley-Terry, Sun et al. Eq. 4)",
    ("reward->prompt", "search"):
        r"$\max_{z}\ \mathbb{E}_{x\sim\mathcal{D},\,y\sim\pi_0(\cdot\mid x,z)}\big[r(x,y)\big]$ (Eq. 16)",
    ("reward->prompt", "conditioned"):
        r"$\max_{\pi,z}\ \mathbb{E}_{(x,y)\sim\mathcal{D}}\Big[\pi\big(y\mid x,z(r(x,y))\big)\Big]$ (Eq. 17, trained"
        r" on its log per token); measured by $\hat r(x,y,s) = -\lvert s - r(x,y)\rvert$ (Eq. 18, $r$ binned into"
        " the $k$ levels)",
    ("best-of-n", "bon"):
        r"$y = \arg\max_{y_i,\ i=1..N,\ y_i\sim\pi(\cdot\mid x)}\ r(x,y_i)$; "
        rf"${KL}\big[\pi_{{\mathrm{{BoN}}}}\,\|\,\pi\big] \le \log N - \frac{{N-1}}{{N}}$",
    ("reward-model", "outcome"):
        r"$\mathcal{L}(\omega) = -\mathbb{E}_{i\mid\mathcal{E}(y_i,y_i^*)=1}\big[\log R_\omega(x_i,y_i)\big]"
        r" - \mathbb{E}_{i\mid\mathcal{E}(y_i,y_i^*)=0}\big[\log(1 - R_\omega(x_i,y_i))\big]$ (Sun et al. Eq. 8,"
        r" which prints $+$ before the second term, a sign slip), $R_\omega = \sigma(r_\omega)$, "
        r"$\mathcal{E}(y,y^*)\in\{0,1\}$ (Eq. 9)",
    ("reward-model", "pairwise"):
        r"$\mathcal{L}(\omega) = -\sum_i\log\frac{\exp r_\omega(y_i^+\mid x)}{\exp r_\omega(y_i^+\mid x)"
        r" + \exp r_\omega(y_i^-\mid x)}$ (Sun et al. Eq. 4), $y^+$ a right and $y^-$ a wrong reply to the same"
        r" $x$: $\mathcal{E}(y^+,y^*) = 1$, $\mathcal{E}(y^-,y^*) = 0$ (Eq. 9)",
    ("reward-model", "discriminator"):
        EQ6 + r" (Sun et al. Eq. 6); $r_\omega(y\mid x) = \log D_\omega(y\mid x) - \log(1 - D_\omega(y\mid x))$"
        r" (Eq. 7), the logit of $D_\omega$",
    ("demonstrations", "sft"):
        rf"$\min_\theta\ -\mathbb{{E}}_{{(x,y^*)\sim {DEMO}}}\ \frac{{1}}{{|y^*|}}\sum_t\log\pi_\theta(y^*_t\mid x,"
        r"y^*_{<t})$ (Sun et al. §3.1.1, $\mathcal{P}_\psi(x) = x$)",
    ("demonstrations", "adversarial"):
        "in turn: refit $D_\\omega$ on the current policy's replies, " + EQ6 + " (Sun et al. Eq. 6), then "
        + EQ5 + r" (Eq. 5) by RLOO with Eq. 1's KL penalty",
}


def equation_markdown(task: str, method: str, title: str, plain: str) -> str:
    """A method's title and its equation as math; the registered plain text for a method not in the table."""
    latex = LATEX.get((task, method))
    return f"**{title}** — {latex}" if latex else f"**{title}** — `{plain}`"
