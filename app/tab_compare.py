"""Compare tab: the policies of one scenario side by side, on the same held-out inputs and the same seed.

Generations, mean reward with error bars, the exact KL between every pair, and where every stored run
sits on the reward-vs-KL plane. The work happens in engine/compare.py through the Lab.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from app import plots_compare as pc
from app import views
from engine.errors import LabInputError

INTRO = ("Pick a scenario and tick the policies to put side by side. Every policy answers the **same held-out "
         "inputs with the same random seed**, so their samples are coupled: where two policies agree they "
         "write the same words, and the differences you see are theirs, not the dice's.")
REWARD_CAPTION = ("Bar = mean reference reward R = (1/n) Σ r(x, y) over the n = inputs × samples replies of a "
                  "policy; whisker = ± one standard error s/√n. Bars whose whiskers overlap may differ by chance only.")
KL_CAPTION = ("Cell (row p, column q) = KL(p ‖ q) = mean over (x, t) of Σ_v p(v|x,y<t) · log[p(v|x,y<t) / "
              "q(v|x,y<t)], in nats per token, exact over the whole vocabulary, teacher-forced on p's own "
              "samples y ∼ p (the first of each input). Zero on the diagonal and not symmetric. The π0 column is how far each policy "
              "moved from the base model.")
FRONTIER_CAPTION = ("x = KL(π ‖ π0) per reply = per-token KL × reply length (nats), the unit of best-of-N's "
                    "bound log N − (N−1)/N; y = mean reference reward. ● a stored run (its own held-out "
                    "evaluation), ◆ measured in this compare (± 1 s.e.), ◀ best-of-N at its KL bound. Lines: RL "
                    "runs over training steps (Eq. 1 trades reward against β·KL); dashed: best-of-N for growing N. "
                    "Up and to the left is better: more reward for less drift from π0.")
SETTING_NAMES = ("n_inputs", "n_samples", "max_new_tokens", "seed")


def build(lab, tab: gr.Tab | None = None) -> None:
    fields = {f["name"]: f for f in lab.compare_fields()}
    from engine.gallery import example_compare
    example = example_compare(lab)   # the gallery's compare of its example policies, shown until one is made
    choices, ticked, rewards, fig, note = _menu_data(lab, "sentiment", (example or {}).get("choices"), example)
    gr.Markdown(INTRO)
    with gr.Row():
        scenario = gr.Dropdown(lab.compare_scenarios(), value="sentiment", label="Scenario", scale=2,
                               elem_id="compare-scenario")
        reward = gr.Dropdown(rewards, value="", label="Also score with a stored reward", scale=2,
                             info="A reward another run made (prompt → reward, parameter → reward).")
        refresh_btn = gr.Button("Refresh runs", scale=0)
    policies = gr.CheckboxGroup(choices, value=ticked, label="Policies",
                                info="Base π0 is always included: every KL to π0 needs it.",
                                elem_id="compare-policies")
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            settings = [_number(fields[name]) for name in SETTING_NAMES]
    run_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
    status = gr.Markdown("**Example** (from the gallery): " + _summary(example) if example else "",
                         elem_id="compare-status")
    with gr.Row(equal_height=True):
        with gr.Column():
            reward_plot = gr.Plot(pc.reward_bars(example, "") if example else None, show_label=False,
                                  elem_id="compare-rewards")
            gr.Markdown(REWARD_CAPTION, elem_classes="caption")
        with gr.Column():
            kl_plot = gr.Plot(pc.kl_heatmap(example) if example else None, show_label=False, elem_id="compare-kl")
            gr.Markdown(KL_CAPTION, elem_classes="caption")
    frontier_plot = gr.Plot(fig, show_label=False, elem_id="compare-frontier")
    frontier_note = gr.Markdown(note, elem_classes="caption")
    table = gr.Dataframe(views.compare_table(example) if example else None, label="Generations: one row per input and sample, one column per policy  [r = reference "
                               "reward, r′ = the stored reward]", wrap=True, interactive=False, max_height=600,
                         elem_id="compare-table")
    download = gr.DownloadButton("Download this compare (JSON)", visible=False, elem_id="compare-download")
    result = gr.State(example)

    # ---- events ----
    def on_scenario(name, current, reward_ref, res):
        return _menus(lab, name, current, reward_ref, res)

    def on_compare(name, chosen, reward_ref, n_inputs, n_samples, max_new_tokens, seed, progress=gr.Progress()):
        overrides = dict(zip(SETTING_NAMES, (n_inputs, n_samples, max_new_tokens, seed)))
        try:
            res = lab.compare(name, chosen or [], reward_ref or "", overrides,
                              on_progress=lambda f, stage: progress(f, desc=stage))
        except LabInputError as e:
            return (f"<span style='color:#d62728'>**Cannot compare:** {e}</span>",) + (gr.skip(),) * 7
        fr = lab.frontier(name, res)
        return (_summary(res), pc.reward_bars(res, reward_ref[:6] if reward_ref else ""), pc.kl_heatmap(res),
                pc.frontier_figure(fr), _frontier_note(fr), _table(res), res,
                gr.update(value=_json_file(res), visible=True))

    scenario_io = ([scenario, policies, reward, result], [policies, reward, frontier_plot, frontier_note])
    scenario.change(on_scenario, *scenario_io, api_visibility="private")
    refresh_btn.click(on_scenario, *scenario_io, api_visibility="private")
    if tab is not None:  # runs finished in other tabs appear when the user comes back here
        tab.select(on_scenario, *scenario_io, api_visibility="private")
    run_btn.click(on_compare, [scenario, policies, reward, *settings],
                  [status, reward_plot, kl_plot, frontier_plot, frontier_note, table, result, download],
                  concurrency_limit=1, concurrency_id="compare", api_name="compare")


def _menu_data(lab, name: str, current: list[str] | None, res: dict | None) -> tuple:
    """A scenario's policy choices (keeping what is still ticked), its stored rewards, its frontier."""
    choices = [(c["label"], c["value"]) for c in lab.compare_choices(name)]
    ticked = [v for v in (current or []) if v in {v for _, v in choices}] or ["base", "prompt"]
    rewards = [("none", "")] + [(c["label"], c["value"]) for c in lab.reward_choices(name)]
    fr = lab.frontier(name, res)
    return choices, ticked, rewards, pc.frontier_figure(fr), _frontier_note(fr)


def _menus(lab, name: str, current: list[str] | None, reward_ref: str, res: dict | None) -> tuple:
    choices, ticked, rewards, fig, note = _menu_data(lab, name, current, res)
    reward_ref = reward_ref if reward_ref in {v for _, v in rewards} else ""
    return gr.update(choices=choices, value=ticked), gr.update(choices=rewards, value=reward_ref), fig, note


def _number(f: dict) -> gr.Number:
    return gr.Number(value=f["default"], label=f["name"], info=f"{f['help']} Range {f['lo']:g} … {f['hi']:g}.",
                     precision=0, minimum=f["lo"], maximum=f["hi"], min_width=160, elem_id=f"compare-{f['name']}")


def _table(res: dict):
    """The generations, every policy column equally wide so they all fit beside the inputs."""
    n = len(res["policies"])
    return gr.update(value=views.compare_table(res), column_widths=["16%"] + [f"{84 / n:.1f}%"] * n)


def _summary(res: dict) -> str:
    c = res["config"]
    return (f"Compared {len(res['policies'])} policies of `{res['scenario']}` on {len(res['inputs'])} held-out "
            f"inputs × {c['n_samples']} samples (≤ {c['max_new_tokens']} tokens, seed {c['seed']}) "
            f"in {res['duration_s']:.0f} s.")


def _frontier_note(fr: dict) -> str:
    """The frontier's caption, plus the policy runs that are not on it yet and how to place them."""
    missing = fr.get("unplaced") or []
    left_off = pc.other_models_note(fr)
    caption = FRONTIER_CAPTION + (f"\n\n**{left_off}** Start the lab with that `LAB_MODEL` to compare them."
                                  if left_off else "")
    if not missing:
        return caption
    names = ", ".join(f"`{m}`" for m in missing[:6]) + (" …" if len(missing) > 6 else "")
    return (caption + f"\n\nNot on the chart yet (no KL to π0 stored): {names} — tick them above and "
            "compare to measure it.")


def _json_file(res: dict) -> str:
    path = Path(tempfile.mkdtemp(prefix="compare-")) / f"compare-{res['scenario']}.json"
    path.write_text(json.dumps(res, indent=1, ensure_ascii=False), encoding="utf-8")
    return str(path)
