"""Round trips: a path of vertices (e.g. prompt,parameter,prompt) run edge by edge, each hop's artifact
feeding the next hop, measuring after every hop how much of the original prompted behaviour π0(·|x,z) is left.

After every hop, on held-out inputs with y ~ π0(·|x,z) (sampled once, shared by all hops):
  kl_to_origin  KL(π0(·|x,z) ‖ π_hop) per token, exact over the vocabulary (as distillation's kl_after);
                π_hop is the policy the hop made (an adapter, a readable prompt or a soft prompt)
  reward        the mean reference reward of π_hop's samples (same inputs and seed as the origin's)
A hop that ends at the reward vertex made no policy: kl_to_origin and reward are null and it reports
pair_accuracy instead, the agreement of its reward with the reference reward on the origin's and π0's samples.

Stored as a parent run (edge "chain", method = the path) whose hops are ordinary runs with `parent_id` set.
"""
from __future__ import annotations

import dataclasses
import threading
import traceback
import types
from dataclasses import dataclass

from engine.errors import LabInputError, RunCancelled
from engine.jobs import OWNER, prepare_task
from engine.policies import Prompt
from engine.references import check_references, references
from engine.registry import EDGES, VERTICES, MethodSpec, build_config, get_method
from engine.config_pieces import opt
from engine.scenarios import Scenario

EDGE = "chain"
MAX_VERTICES = 4   # three hops: a full trip around the triangle (and the runs table's method column fits it)
# The config field through which an edge takes the previous hop's artifact (its run id). None: the edge reads
# the scenario's prompt z, so the previous hop's readable prompt becomes z of that hop's scenario.
INPUT_FIELD = {"parameter->prompt": "source_run", "parameter->reward": "source_run",
               "reward->parameter": "reward", "reward->prompt": "reward",
               "prompt->parameter": None, "prompt->reward": None}
# What a method is known to make before it runs (others are read off the finished hop).
MAKES = {("parameter->prompt", "soft"): "soft_prompt", ("parameter->prompt", "discrete"): "prompt"}
POLICY_KINDS = ("adapter", "prompt", "soft_prompt")


@dataclass(frozen=True)
class ChainConfig:
    n_heldout: int = opt(16, "Held-out inputs every hop is measured on (0 = all).", 0, 10000)
    eval_samples: int = opt(2, "Samples per held-out input, of the origin and of every hop's policy.", 1, 16)
    max_new_tokens: int = opt(40, "Longest reply sampled, in tokens.", 4, 256)
    eval_temperature: float = opt(0.7, "Sampling temperature of the held-out generations.", 0.05, 2.0)
    seed: int = opt(0, "Seed shared by the origin and every hop (coupled sampling).", 0, 2**31 - 1)


CHAIN_SPEC = MethodSpec(EDGE, "Round trip", "", ChainConfig, {}, None, ())


@dataclass(frozen=True)
class Hop:
    edge: object          # EdgeSpec
    method: MethodSpec
    overrides: dict       # the user's settings for this hop (the feeding field is added when it runs)


@dataclass(frozen=True)
class ChainRequest:
    path: tuple[str, ...]
    hops: tuple[Hop, ...]
    scenario: Scenario
    config: ChainConfig
    source_run: str = ""  # the adapter a path that starts at `parameter` starts from

    def stored_config(self) -> dict:
        return {"path": list(self.path), "methods": [h.method.name for h in self.hops],
                "hop_overrides": [h.overrides for h in self.hops], "source_run": self.source_run,
                "method_config": dataclasses.asdict(self.config), "scenario_data": self.scenario.to_dict()}


# ---------- checking a request (reads only) ----------
def parse_path(path: str | list[str]) -> tuple[str, ...]:
    """Vertices of a path such as "prompt,parameter,prompt"; errors name the bad part."""
    parts = [p.strip() for p in (path.split(",") if isinstance(path, str) else path) if p.strip()]
    for v in parts:
        if v not in VERTICES:
            raise LabInputError(f"path: vertex {v!r} is unknown; choose from {', '.join(VERTICES)}")
    if not 2 <= len(parts) <= MAX_VERTICES:
        raise LabInputError(f"path: give 2 to {MAX_VERTICES} vertices separated by commas, "
                            f"e.g. prompt,parameter,prompt (got {len(parts)})")
    for a, b in zip(parts, parts[1:]):
        if a == b:
            raise LabInputError(f"path: {a},{b} stays at one vertex; consecutive vertices must differ")
    missing = [f"{a}->{b}" for a, b in zip(parts, parts[1:]) if not EDGES[f"{a}->{b}"].available]
    if missing:
        built = ", ".join(e.name for e in EDGES.values() if e.available)
        raise LabInputError(f"path: edge{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                            f"{'are' if len(missing) > 1 else 'is'} not built yet; built: {built}")
    return tuple(parts)


def split_sets(sets: dict[str, str], n_hops: int) -> tuple[dict, list[dict]]:
    """`chain.KEY` → the chain's own settings; `N.KEY` → hop N only (1-based); `KEY` → every hop that has it."""
    chain, hops = {}, [{} for _ in range(n_hops)]
    for key, value in sorted(sets.items(), key=lambda kv: "." in kv[0]):   # a hop's own setting wins
        scope, dot, field = key.partition(".")
        if not dot:
            scope, field = "", key
        if scope == "chain":
            chain[field] = value
        elif scope == "":
            for h in hops:
                h[field] = value
        elif scope.isdigit() and 1 <= int(scope) <= n_hops:
            hops[int(scope) - 1][field] = value
        else:
            raise LabInputError(f"--set {key}: the part before '.' must be chain or a hop number 1…{n_hops}")
    return chain, hops


def prepare_chain(path: str | list[str], scenario: Scenario, methods: list[str | None] | None = None,
                  sets: dict[str, str] | None = None, source_run: str = "", lookup=None) -> ChainRequest:
    """Validate a round trip completely before anything is written; raises LabInputError naming the part."""
    vertices = parse_path(path)
    edges = [EDGES[f"{a}->{b}"] for a, b in zip(vertices, vertices[1:])]
    methods = list(methods or [])
    if methods and len(methods) != len(edges):
        raise LabInputError(f"methods: give one per hop ({len(edges)}), empty for an edge's default")
    specs = [get_method(e, (methods[i] if methods else None) or _default_method(edges, i)) for i, e in enumerate(edges)]
    chain_sets, hop_sets = split_sets(sets or {}, len(edges))
    config = build_config(CHAIN_SPEC, chain_sets)
    hops = tuple(Hop(e, s, _known(s, hop_sets[i])) for i, (e, s) in enumerate(zip(edges, specs)))
    _check_unused(sets or {}, hops)
    _check_feeds(hops, vertices, source_run)
    for i, hop in enumerate(hops):
        feed = _first_feed(hop, source_run) if i == 0 else {}
        hop_config = build_config(hop.method, hop.overrides | feed)
        if lookup is not None:   # references the user gave; the fed field is checked when the hop runs
            fed = set() if i == 0 else {INPUT_FIELD[hop.edge.name]}
            _check_given_references(hop_config, scenario, lookup, skip=fed)
    return ChainRequest(vertices, hops, scenario, config, source_run)


def _default_method(edges: list, i: int) -> str | None:
    """The edge's first method, except that a hop into the prompt vertex followed by a hop that reads a
    readable z makes a readable prompt (parameter->prompt's `discrete`)."""
    followed_by_z = i + 1 < len(edges) and INPUT_FIELD[edges[i + 1].name] is None
    return "discrete" if followed_by_z and edges[i].name == "parameter->prompt" else None


def _known(spec: MethodSpec, sets: dict) -> dict:
    """The settings a hop's config knows (a plain `KEY` applies only to the hops that have it)."""
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    return {k: v for k, v in sets.items() if k in fields}


def _check_unused(sets: dict, hops: tuple[Hop, ...]) -> None:
    for key in sets:
        scope, dot, field = key.partition(".")
        if not dot:
            field, scope = key, ""
        if scope == "chain":
            continue
        targets = hops if scope == "" else (hops[int(scope) - 1],)
        if not any(field in h.overrides for h in targets):
            where = "any hop" if scope == "" else f"hop {scope} ({hops[int(scope) - 1].edge.name})"
            raise LabInputError(f"--set {key}: {field} is not a setting of {where}")


def _check_feeds(hops: tuple[Hop, ...], vertices: tuple[str, ...], source_run: str) -> None:
    if vertices[0] == "parameter" and not source_run.strip():
        raise LabInputError("source_run: a path that starts at parameter needs the adapter to start from "
                            "(--source-run RUN_ID)")
    for i in range(1, len(hops)):
        made = MAKES.get((hops[i - 1].edge.name, hops[i - 1].method.name))
        if INPUT_FIELD[hops[i].edge.name] is None and made == "soft_prompt":
            raise LabInputError(f"hop {i + 1} ({hops[i].edge.name}) starts from a readable prompt, but hop {i} "
                                f"({hops[i - 1].edge.name}, {hops[i - 1].method.name}) makes a soft prompt; "
                                f"use its discrete method (--methods)")


def _first_feed(hop: Hop, source_run: str) -> dict:
    field = INPUT_FIELD[hop.edge.name]
    return {field: source_run} if field == "source_run" and source_run else {}


def _check_given_references(config, scenario, lookup, skip: set) -> None:
    refs = {f: w for f, w in references(config).items() if f not in skip}
    view = types.SimpleNamespace(REFERENCES=refs, **{f: getattr(config, f) for f in refs})
    check_references(view, scenario, lookup)


def restore_chain(config: dict, lookup=None) -> ChainRequest:
    """The request a stored chain row was made from (a worker runs a queued round trip from its row)."""
    from engine.scenarios import parse_scenario
    sets = {f"chain.{k}": str(v) for k, v in (config.get("method_config") or {}).items()}
    for i, overrides in enumerate(config.get("hop_overrides") or []):
        sets |= {f"{i + 1}.{k}": str(v) for k, v in overrides.items()}
    return prepare_chain(config["path"], parse_scenario(config["scenario_data"]), config.get("methods"), sets,
                         config.get("source_run") or "", lookup=lookup)


# ---------- running ----------
def create_chain_run(store, request: ChainRequest, status: str = "queued", visitor: str | None = None) -> str:
    """The parent run row, so a page can watch it before the first hop starts: `queued` for a worker to take
    (the page, owned by its `visitor`), or `running` in this process (the CLI)."""
    return store.create_run(EDGE, ",".join(request.path), request.scenario.name, request.stored_config(),
                            status=status, owner=OWNER if status == "running" else None, visitor=visitor)


def execute_chain(lab, request: ChainRequest, parent_id: str, cancel: threading.Event | None = None) -> None:
    """Run every hop as a child run of `parent_id`, measuring after each; the parent ends succeeded, failed
    or cancelled (then with its own points and samples removed; finished hops stay, as complete runs).

    The chain holds the job runner's turn for all its hops: runs submitted meanwhile wait in the queue."""
    with lab.jobs.exclusive:
        _execute_chain(lab, request, parent_id, cancel)


def _execute_chain(lab, request: ChainRequest, parent_id: str, cancel: threading.Event | None) -> None:
    store = lab.store
    store.mark_started(parent_id, owner=OWNER)
    try:
        store.update_run(parent_id, stage="held-out: the origin π0(·|x,z) and π0", model=lab.jobs.host.model_name)
        origin = Origin.measure(lab.jobs.host, request.scenario, request.config)
        store.add_samples(parent_id, origin.rows())
        store.add_points(parent_id, 0, {"kl_to_origin": origin.kl_base, "reward": origin.reward_base})
        hops, prev = [], None
        for i, hop in enumerate(request.hops):
            if (cancel is not None and cancel.is_set()) or store.cancel_requested(parent_id):
                raise RunCancelled()
            store.update_run(parent_id, progress=round(i / len(request.hops), 4),
                             stage=f"hop {i + 1}/{len(request.hops)}: {hop.edge.name} ({hop.method.name})")
            child = _run_hop(lab, request, i, hop, prev, parent_id)
            hops.append(_measure_hop(lab, origin, child, i, parent_id))
            store.update_run(parent_id, metrics=summary_metrics(origin, hops))
            prev = child
        store.mark_finished(parent_id, "succeeded", metrics=summary_metrics(origin, hops))
    except RunCancelled:
        _fail(store, parent_id, "cancelled", "cancelled by the user")
    except LabInputError as e:
        _fail(store, parent_id, "failed", str(e))
    except Exception as e:
        _fail(store, parent_id, "failed", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")


def _fail(store, parent_id: str, status: str, error: str) -> None:
    store.clear_run_outputs(parent_id)
    store.mark_finished(parent_id, status, error=error)


def _run_hop(lab, request: ChainRequest, i: int, hop: Hop, prev: dict | None, parent_id: str) -> dict:
    """Prepare (with the previous hop's artifact fed in), create and execute hop i; its finished run."""
    scenario, feed = hop_inputs(request, i, hop, prev)
    req = prepare_task(hop.edge, hop.method.name, scenario, hop.overrides | feed, lookup=lab.store.get_run)
    child_id = lab.store.create_run(hop.edge.name, hop.method.name, scenario.name, req.stored_config(),
                                    status="queued", owner=OWNER, parent_id=parent_id,
                                    visitor=lab.store.get_run(parent_id)["visitor"])
    lab.jobs.execute(child_id)
    child = lab.store.get_run(child_id)
    if child["status"] == "cancelled":
        raise RunCancelled()
    if child["status"] != "succeeded":
        error = (child["error"] or "").split("\n")[0]
        raise LabInputError(f"hop {i + 1} ({hop.edge.name}, run {child_id}) {child['status']}: {error}")
    return child


def hop_inputs(request: ChainRequest, i: int, hop: Hop, prev: dict | None) -> tuple[Scenario, dict]:
    """(the hop's scenario, its fed setting): the previous hop's run id in the edge's input field, or, for an
    edge that reads z from the scenario, the previous hop's readable prompt as z."""
    if prev is None:
        return request.scenario, _first_feed(hop, request.source_run)
    field = INPUT_FIELD[hop.edge.name]
    artifact = (prev.get("artifacts") or [{}])[0]
    if field is not None:
        return request.scenario, {field: prev["run_id"]}
    if artifact.get("kind") != "prompt":
        raise LabInputError(f"hop {i + 1} ({hop.edge.name}) starts from a readable prompt, but hop {i} made "
                            f"{artifact.get('kind') or 'nothing'}")
    z = Prompt.from_data(artifact["data"])
    return dataclasses.replace(request.scenario, prompt=z.text, demonstrations=z.turns), {}


def _measure_hop(lab, origin, child: dict, i: int, parent_id: str) -> dict:
    lab.store.update_run(parent_id, stage=f"hop {i + 1}: measuring against the origin")
    metrics, rows = origin.measure_run(lab.jobs.host, child, f"hop {i + 1}: {child['edge']}")
    lab.store.add_samples(parent_id, rows)
    lab.store.add_points(parent_id, i + 1, {k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return {"edge": child["edge"], "method": child["method"], "run_id": child["run_id"], "metrics": metrics}


@dataclass
class Origin:
    """The yardstick of every hop: π0(·|x,z) sampled on held-out inputs with its next-token tables, and π0."""
    config: ChainConfig
    scenario: Scenario
    target: object        # engine.evaluation.Scored of π0(·|x,z)
    tables: list          # (T_i, V) log π0(·|x,z,y<t) per reply
    base: object          # Scored of π0
    kl_base: float        # KL(π0(·|x,z) ‖ π0): where a hop that kept nothing would land

    @classmethod
    def measure(cls, host, scenario: Scenario, config: ChainConfig) -> "Origin":
        from engine.evaluation import kl_to_cached, reply_logprobs
        from engine.policies import BASE
        z = scenario.prompt_policy("origin π0(·|x,z)")
        target = _sample(host, z, scenario, config)
        tables = reply_logprobs(host, z, target.inputs, target.token_ids)
        base = _sample(host, BASE, scenario, config)
        return cls(config, scenario, target, tables, base,
                   kl_to_cached(host, tables, BASE, target.inputs, target.token_ids))

    @property
    def reward_origin(self) -> float:
        return self.target.mean_reward

    @property
    def reward_base(self) -> float:
        return self.base.mean_reward

    def rows(self) -> list[dict]:
        return self.target.rows() + self.base.rows()

    def measure_run(self, host, run: dict, label: str) -> tuple[dict, list[dict]]:
        """A finished hop's numbers against the origin, and its held-out samples."""
        from engine.evaluation import kl_to_cached
        from engine.references import artifact_policy_spec, policy_from_spec
        artifact = (run.get("artifacts") or [{}])[0]
        if artifact.get("kind") == "reward":
            return self._reward_agreement(host, artifact), []
        if artifact.get("kind") not in POLICY_KINDS:
            raise LabInputError(f"run {run['run_id']} made {artifact.get('kind') or 'nothing'}; "
                                f"the chain measures adapters, prompts, soft prompts and rewards")
        policy = dataclasses.replace(policy_from_spec(artifact_policy_spec(artifact, run["run_id"]), host),
                                     label=label)
        kl = kl_to_cached(host, self.tables, policy, self.target.inputs, self.target.token_ids)
        scored = _sample(host, policy, self.scenario, self.config)
        return {"kl_to_origin": kl, "reward": scored.mean_reward}, scored.rows()

    def _reward_agreement(self, host, artifact: dict) -> dict:
        """A reward made no policy: how often it orders the origin's and π0's replies like the reference."""
        from engine.references import build_any_reward
        from engine.rewards import pair_accuracy
        xs = self.target.inputs + self.base.inputs
        derived = build_any_reward(artifact.get("data") or {}, host)(xs, self.target.outputs + self.base.outputs)
        acc, n = pair_accuracy(derived, self.target.rewards + self.base.rewards, xs)
        return {"kl_to_origin": None, "reward": None, "pair_accuracy": acc, "n_pairs": n}


def _sample(host, policy, scenario: Scenario, config: ChainConfig):
    from engine.evaluation import sample_and_score
    xs = scenario.heldout_inputs[:config.n_heldout or None]
    return sample_and_score(host, policy, xs, scenario.reward(), config.eval_samples, config.max_new_tokens,
                            config.eval_temperature, config.seed)


def summary_metrics(origin, hops: list[dict]) -> dict:
    return {"reward_origin": origin.reward_origin, "reward_base": origin.reward_base,
            "kl_base_to_origin": origin.kl_base, "hops": hops}


def chain_summary(run: dict) -> dict:
    """The CLI's object for a finished chain run."""
    m = run.get("metrics") or {}
    return {"run_id": run["run_id"], "status": run["status"], "scenario": run["scenario"],
            "path": run["method"], "duration_s": run["duration_s"],
            "origin": {"reward": m.get("reward_origin"), "reward_base": m.get("reward_base"),
                       "kl_base_to_origin": m.get("kl_base_to_origin")},
            "hops": m.get("hops") or [], "error": run["error"]}


def run_chain(lab, request: ChainRequest) -> str:
    """Create and execute a chain in this thread (the CLI); returns the parent run id."""
    with lab.jobs.exclusive:
        parent_id = create_chain_run(lab.store, request, status="running")
        execute_chain(lab, request, parent_id)
    return parent_id


def _check_visitor_hops(settings, request: ChainRequest) -> None:
    """What a shared lab holds a visitor's single runs to (engine/limits.py), for every hop of a round trip."""
    from engine.limits import check_public_caps, check_visitor_overrides
    for hop in request.hops:
        if settings.multi_user:
            check_visitor_overrides(hop.overrides)
        if settings.public:
            check_public_caps(build_config(hop.method, hop.overrides), request.scenario)
    if settings.public:
        check_public_caps(request.config, request.scenario)


def start_chain(lab, request: ChainRequest, who=None) -> str:
    """Queue the chain (the page) for visitor `who`: a worker runs it like any run, so it waits its turn and
    outlives a restart. Its hops belong to the same visitor."""
    if who is not None:
        lab.check_may_queue(who)
        if not who.admin:
            _check_visitor_hops(lab.settings, request)
    parent_id = create_chain_run(lab.store, request, visitor=who.id if who is not None else None)
    lab.jobs.wake()
    return parent_id
