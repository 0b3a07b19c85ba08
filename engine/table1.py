"""Sun et al.'s Table 1, run live: the three levers — θ (fine-tuning), ψ (the prompter) and L (replies sampled
at inference, selected by a reward) — one at a time and jointly, on one model, one task, the same held-out
inputs and seeds, with one metric (exact match on `arithmetic`, the reference reward elsewhere).

Each policy is made by ordinary runs of the lab (prompt search, SFT, an outcome reward model, RLOO with the
golden or the learned reward, adversarial imitation of the demonstrations — the "InverseRLignment" row), found in storage when one with the same settings and scenario succeeded before
(`reused_run`), else run now. Each policy is then sampled M = 16 times per held-out input in one best-of-N run
whose selection reward is the learned outcome reward model; from those samples, exactly over subsets
(`bon_expected`): the policy alone (L = 1), best-of-N by the golden metric (an oracle at inference) and by the
learned reward; the same run measures the policy's exact KL to π0 (`kl_samples`), so a second table reads it. Compute per row = the runs that made its policy and reward (wall time, forward tokens) + the
share N/M of its evaluation run: what answering with that strategy cost here.

Stored as a parent run (edge "table1") whose sub-runs are ordinary runs.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from engine.config_pieces import opt
from engine.errors import LabInputError, RunCancelled
from engine.evaluation import mean_stderr
from engine.jobs import OWNER, prepare_task
from engine.registry import build_config, get_task
from engine.rl_objectives import best_of_n_kl_bound
from engine.scenarios import Scenario, parse_scenario
from engine.tasks.best_of_n import bon_expected

EDGE = "table1"
M = 16                 # replies per held-out input in every evaluation pool
KL_SAMPLES = 4         # of them, per input, teacher-forced for the exact KL to π0


@dataclass(frozen=True)
class Table1Config:
    preset: str = opt("quick", "Sizes of the runs behind the rows: `quick` (short training, ≈ 20 min on 2 CPU "
                               "cores), `default` (each method at its own defaults) or `tiny` (a smoke run of a "
                               "few steps each: its numbers are noise).", choices=("quick", "default", "tiny"))
    n_heldout: int = opt(16, "Held-out inputs every row is measured on (the same for all).", 2, 10000)
    max_new_tokens: int = opt(40, "Longest reply, in tokens.", 4, 256)
    temperature: float = opt(0.7, "Sampling temperature of every evaluation pool.", 0.05, 2.0)
    seed: int = opt(0, "Seed of every evaluation pool.", 0, 2**31 - 1)


# the runs that make the policies and the learned reward: (task, method, settings per preset)
SMALL_EVAL = {"n_heldout": 8, "eval_samples": 1}   # a sub-run's own held-out check; the table measures apart
TINY = {"n_heldout": 2, "eval_samples": 1, "max_new_tokens": 8}   # the `tiny` preset: a smoke run, its numbers noise
RL = {"quick": {"steps": 8, "batch_size": 4, "eval_every": 0} | SMALL_EVAL, "default": {},
      "tiny": {"steps": 1, "batch_size": 2, "k": 2, "n_train": 4, "eval_every": 0} | TINY}
RUNS = {
    "prompt-search": ("reward->prompt", "search", {
        "quick": {"budget": 200} | SMALL_EVAL, "default": {},
        "tiny": {"budget": 12, "search_inputs": 2, "search_samples": 1, "rewrites": 1, "edits": 1, "demonstrations": 1,
                 "finalists": 1} | TINY}),
    "sft": ("demonstrations", "sft", {"quick": {"steps": 30} | SMALL_EVAL, "default": {},
                                      "tiny": {"steps": 2, "batch_size": 2, "n_train": 4, "eval_every": 0} | TINY}),
    "orm": ("reward-model", "outcome", {
        "quick": {"samples_per_input": 4, "heldout_samples": 4, "n": "1,2,4", "n_heldout": 8}, "default": {},
        "tiny": {"n_train": 6, "samples_per_input": 4, "n_heldout": 2, "heldout_samples": 2, "n": "1,2",
                 "max_new_tokens": 20, "head_steps": 30}}),
    "rl-golden": ("reward->parameter", "rloo", RL),
    "rl-learned-rm": ("reward->parameter", "rloo", RL),
    "prompt-search+rl-golden": ("reward->parameter", "rloo", RL),   # RL under the searched prompt: ψ and θ
    "adversarial-imitation": ("demonstrations", "adversarial", {
        "quick": {"rounds": 2, "steps": 4, "batch_size": 4} | SMALL_EVAL, "default": {},
        "tiny": {"rounds": 1, "steps": 1, "batch_size": 2, "k": 2, "n_train": 4, "samples_per_input": 1,
                 "head_steps": 30} | TINY}),
}
# the policies: (strategy, θ, ψ, the policy reference or the run that makes it, runs behind it)
POLICIES = (
    ("zero-shot", "fixed", "heuristic", "instruction", ()),
    ("few-shot", "fixed", "heuristic + demonstrations", "few-shot", ()),
    ("prompt-search", "fixed", "optimized", "prompt-search", ("prompt-search",)),
    ("sft", "optimized", "fixed", "sft", ("sft",)),
    ("rl-golden", "optimized", "fixed", "rl-golden", ("rl-golden",)),
    ("rl-learned-rm", "optimized", "fixed", "rl-learned-rm", ("orm", "rl-learned-rm")),
    ("adversarial-imitation", "optimized", "fixed", "adversarial-imitation", ("adversarial-imitation",)),
    ("prompt-search+rl-golden", "optimized", "optimized", "prompt-search+rl-golden",
     ("prompt-search", "prompt-search+rl-golden")),
)
# best-of-N rows: (policy, selection, N); selection "golden" = the scenario's metric, "learned-rm" = the ORM
SELECTIONS = [("zero-shot", "golden", 4), ("zero-shot", "golden", 16), ("zero-shot", "learned-rm", 16)] + \
             [(p, "learned-rm", 16) for p, *_ in POLICIES[1:]]


@dataclass(frozen=True)
class Table1Request:
    scenario: Scenario
    config: Table1Config

    def stored_config(self) -> dict:
        return {"method_config": dataclasses.asdict(self.config), "scenario_data": self.scenario.to_dict()}


def prepare_table1(scenario: Scenario, overrides: dict | None = None) -> Table1Request:
    from engine.methods import MethodSpec
    spec = MethodSpec("table1", "Table 1", "", Table1Config, {}, None, ())
    config = build_config(spec, overrides or {})
    if len(scenario.expert_demonstrations) < 2:
        raise LabInputError(f"scenario {scenario.name!r} has no expert demonstrations: Table 1's SFT row needs them "
                            "(add \"expert_demonstrations\" to the scenario)")
    return Table1Request(scenario, config)


def create_table1_run(store, request: Table1Request, status: str = "queued", visitor: str | None = None) -> str:
    return store.create_run(EDGE, "table1", request.scenario.name, request.stored_config(), status=status,
                            owner=OWNER if status == "running" else None, visitor=visitor)


def run_table1(lab, request: Table1Request) -> str:
    """Create and execute a Table 1 in this thread (the CLI); its run id."""
    with lab.jobs.exclusive:
        run_id = create_table1_run(lab.store, request, status="running")
        execute_table1(lab, request, run_id)
    return run_id


def restore_table1(config: dict) -> Table1Request:
    return prepare_table1(parse_scenario(config["scenario_data"]), config["method_config"])


def execute_table1(lab, request: Table1Request, run_id: str, cancel: threading.Event | None = None) -> None:
    """Make (or find) every run behind the rows, then measure the rows; the parent run stores them."""
    store = lab.store
    store.mark_started(run_id, owner=OWNER)
    try:
        made = _make_runs(lab, request, run_id, cancel)
        rows = _measure_rows(lab, request, made, run_id, cancel)
    except RunCancelled:
        store.mark_finished(run_id, "cancelled", error="cancelled by the user")
        return
    except LabInputError as e:
        store.mark_finished(run_id, "failed", error=str(e))
        return
    except Exception as e:   # noqa: BLE001 (a failed table keeps its error; its finished sub-runs stay usable)
        import traceback
        store.mark_finished(run_id, "failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
        return
    metric = "exact match" if request.scenario.reward_spec.get("kind") == "exact-number" else "reference reward"
    store.mark_finished(run_id, "succeeded", metrics={"metric_name": metric, "rows": rows,
                                                      "runs": {k: v["run_id"] for k, v in made.items()}})


# ---------- the runs behind the rows ----------
def _progress(lab, run_id: str, cancel, fraction: float, stage: str) -> None:
    if (cancel is not None and cancel.is_set()) or lab.store.report_progress(run_id, round(fraction, 4), stage):
        raise RunCancelled()


def _make_runs(lab, request: Table1Request, parent_id: str, cancel) -> dict[str, dict]:
    """{name: finished run (with `reused`)} for RUNS, then an evaluation pool per policy ("pool:<strategy>")."""
    made: dict[str, dict] = {}
    steps = list(RUNS) + [f"pool:{p[0]}" for p in POLICIES]
    for i, name in enumerate(steps):
        _progress(lab, parent_id, cancel, 0.9 * i / len(steps), f"{name}: finding or running it ({i + 1}/{len(steps)})")
        task, method, overrides = _run_settings(name, request, made)
        made[name] = _find_or_run(lab, task, method, request.scenario, overrides, parent_id)
    return made


def _run_settings(name: str, request: Table1Request, made: dict) -> tuple[str, str, dict]:
    if name.startswith("pool:"):
        strategy = name.split(":", 1)[1]
        ref = next(p[3] for p in POLICIES if p[0] == strategy)
        policy = made[ref]["run_id"] if ref in made else ref
        c = request.config
        return "best-of-n", "bon", {"policy": policy, "reward": made["orm"]["run_id"], "n": f"1,4,{M}",
                                    "n_heldout": c.n_heldout, "max_new_tokens": c.max_new_tokens,
                                    "temperature": c.temperature, "seed": c.seed, "kl_samples": KL_SAMPLES}
    task, method, presets = RUNS[name]
    overrides = dict(presets[request.config.preset])
    if name == "rl-learned-rm":
        overrides["reward"] = made["orm"]["run_id"]
    if name == "prompt-search+rl-golden":
        overrides["prompt"] = made["prompt-search"]["run_id"]
    return task, method, overrides


def _find_or_run(lab, task: str, method: str, scenario: Scenario, overrides: dict, parent_id: str) -> dict:
    """A succeeded run on this model with exactly these settings and this scenario, else a new one run now."""
    req = prepare_task(get_task(task), method, scenario, overrides, lookup=lab.store.get_run)
    config = dataclasses.asdict(req.config)
    digest = scenario.digest()
    for run in lab.store.list_runs(scenario=scenario.name, edge=task, method=method, status="succeeded",
                                   model=lab.model, limit=10_000):
        if run["config"].get("method_config") == config and run["config"].get("scenario_hash") == digest:
            return lab.store.get_run(run["run_id"]) | {"reused": True}
    child = lab.store.create_run(task, method, scenario.name, req.stored_config(), status="queued", owner=OWNER,
                                 parent_id=parent_id, visitor=lab.store.get_run(parent_id)["visitor"])
    lab.jobs.execute(child)
    run = lab.store.get_run(child)
    if run["status"] == "cancelled":
        raise RunCancelled()
    if run["status"] != "succeeded":
        raise LabInputError(f"{task} {method} (run {child}) {run['status']}: {(run['error'] or '').splitlines()[0]}")
    return run | {"reused": False}


# ---------- the rows ----------
def per_input(samples: list[dict], selection: str | None, n: int) -> list[float]:
    """The expected metric of each held-out input's answer: best-of-n by `selection` ("reward" = the golden
    metric, "selection_reward" = the learned one) over its M stored samples, or their mean for n = 1."""
    by_input: dict[str, list[dict]] = {}
    for row in samples:
        by_input.setdefault(row["input"], []).append(row)
    out = []
    for rows in by_input.values():
        rows = sorted(rows, key=lambda r: r["sample_index"])
        reference = [r["reward"] for r in rows]
        select = [r[selection] for r in rows] if selection else reference
        out.append(bon_expected(select, reference, n) if n > 1 else sum(reference) / len(reference))
    return out


def _cost(runs: list[dict], pool: dict, n: int) -> tuple[float, int]:
    """(wall seconds, forward tokens): the runs that made the policy and reward, plus n/M of its pool."""
    wall = sum(r["duration_s"] or 0.0 for r in runs) + (pool["duration_s"] or 0.0) * n / M
    tokens = sum((r["metrics"] or {}).get("forward_tokens", 0) for r in runs)
    return wall, int(tokens + (pool["metrics"] or {}).get("forward_tokens", 0) * n / M)


def _measure_rows(lab, request: Table1Request, made: dict, parent_id: str, cancel) -> list[dict]:
    rows, kl = [], {}
    for i, (strategy, theta, psi, _, behind) in enumerate(POLICIES):
        _progress(lab, parent_id, cancel, 0.9 + 0.1 * i / len(POLICIES), f"{strategy}: reading its samples")
        pool = made[f"pool:{strategy}"] = made[f"pool:{strategy}"] | {"samples": lab.store.samples(
            made[f"pool:{strategy}"]["run_id"])}
        kl[strategy] = pool["metrics"]["policy_kl_to_base"]   # measured by the pool run, stored with it
        rows.append(_row(strategy, theta, psi, 1, None, pool, [made[b] for b in behind], kl[strategy])
                    | {"joint": "+" in strategy})
    for strategy, selection, n in SELECTIONS:
        _, theta, psi, _, behind = next(p for p in POLICIES if p[0] == strategy)
        behind = list(behind) + (["orm"] if selection == "learned-rm" and "orm" not in behind else [])
        name = f"bon-{selection}-{n}" if strategy == "zero-shot" else f"{strategy}+bon-{selection}-{n}"
        row = _row(name, theta, psi, n, "reward" if selection == "golden" else "selection_reward",
                   made[f"pool:{strategy}"], [made[b] for b in behind], kl[strategy])
        rows.append(row | {"joint": strategy != "zero-shot", "selection": selection,
                           "kl_bon_bound": best_of_n_kl_bound(n)})
    return rows


def _row(strategy: str, theta: str, psi: str, n: int, selection: str | None, pool: dict, behind: list[dict],
         kl: float) -> dict:
    samples = pool["samples"]
    mean, stderr = mean_stderr(per_input(samples, selection, n))
    wall, tokens = _cost(behind, pool, n)
    runs = behind + [pool]
    return {"strategy": strategy, "theta": theta, "psi": psi, "L": n, "metric": mean, "stderr": stderr,
            "kl_to_base": kl, "wall_s": round(wall, 1), "forward_tokens": tokens,
            "reused_run": all(r["reused"] for r in runs), "runs": [r["run_id"] for r in runs],
            "joint": False}


def table1_summary(run: dict) -> dict:
    """The CLI's JSON: {"run_id", "scenario", "metric_name", "rows": [...]} (+ status, wall time, error)."""
    m = run.get("metrics") or {}
    return {"run_id": run["run_id"], "status": run["status"], "scenario": run["scenario"],
            "metric_name": m.get("metric_name"), "rows": m.get("rows") or [], "duration_s": run["duration_s"],
            "error": run["error"]}
