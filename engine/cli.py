"""`python -m engine`: every experiment of the page, scriptable, as JSON.

  convert --from prompt --to parameter --scenario sentiment [--method kl] [--preset quick] [--set key=value ...] --json
  convert --from parameter --to reward --source-run RUN_ID [--pi1 scenario:concise] [--w 1] [--preset P] --json
  bon --scenario sentiment --n 1,2,4,8,16 [--reward RUN_ID] [--policy base] [--preset quick] --json
  reward-model --scenario arithmetic [--method outcome|pairwise|discriminator] [--policy prompt]
               [--demonstrations FILE] [--preset quick] [--set key=value ...] --json
  sft --scenario arithmetic [--method sft|adversarial] [--demonstrations FILE] [--preset quick] [--set ...] --json
  (--preset quick: the method's short run, about a minute on 2 CPU cores; --set still overrides it. On log-ratio
   --preset also takes its steering presets: proxy-tuning, contrastive-decoding, ...)
  table1 --scenario arithmetic [--preset quick|default|tiny] [--demonstrations FILE] --json   Sun et al.'s Table 1
  chain --scenario sentiment --path prompt,parameter,prompt [--methods kl,discrete] [--set N.key=value] --json
  submit --from prompt --to parameter --scenario sentiment [...]   the arguments of convert: queue the run
  worker [--until-idle]  run queued runs (the page's, submit's) one at a time until stopped
  rerun RUN_ID           queue a new run with that run's settings (e.g. one a restart interrupted)
  runs [--scenario S] [--edge E] --json
  show RUN_ID --json
  export RUN_ID [RUN_ID ...] --format json|csv|samples-csv [--out PATH]
  artifact RUN_ID [--out DIR]   the run's artifact as one file: adapter zip (PEFT folder), prompt .txt, reward .json
  delete RUN_ID
  edges --json
  info --json            model, device and the precision chosen at start-up (with the micro-benchmark)
  gallery [--out DIR] --json   run the gallery's example runs at their defaults and write the bundle the lab
                         imports into an empty database (`make gallery`; engine/gallery.py)

Exit codes: 0 success, 2 bad input (message on stderr), 1 the run itself failed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from engine.errors import LabInputError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors are bad input too: exit 2
        self.print_usage(sys.stderr)
        raise LabInputError(message)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise LabInputError(f"--set {pair!r}: expected key=value, e.g. --set steps=20")
        out[key.strip()] = value.strip()
    return out


SHORTCUTS = {"--source-run": "source_run", "--pi0": "pi0", "--pi1": "pi1", "--w": "w", "--reward": "reward",
             "--preset": "preset"}


def _add_sets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field; repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _given(args, *fields: str) -> dict[str, str]:
    """The flags the user gave (a flag left out leaves the config default, or its --set, in place)."""
    return {f: getattr(args, f) for f in fields if getattr(args, f) is not None}


def convert_overrides(args) -> dict[str, str]:
    """--set pairs, then the shortcut flags (--source-run, --w, ...) for the fields they name."""
    out = _parse_sets(args.sets)
    return out | _given(args, *SHORTCUTS.values())


PRESET_HELP = "default (the method's defaults) or quick (a short run: about a minute on 2 CPU cores)"
DEMOS_HELP = ('a JSONL file of expert demonstrations, one {"input": ..., "reply": ...} a line (default: the '
              "scenario's expert_demonstrations)")


def scenario_with_demonstrations(name_or_path: str, path: str | None):
    """The scenario, its expert demonstrations replaced by the file's when one is given (read whole first)."""
    import dataclasses

    from engine.demonstrations import load_demonstration_file
    from engine.scenarios import load_scenario
    scenario = load_scenario(name_or_path)
    if not path:
        return scenario
    return dataclasses.replace(scenario, expert_demonstrations=load_demonstration_file(path))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m engine", description="Triangle Lab engine")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, about in (("convert", "run one edge of the triangle"),
                        ("submit", "queue one edge's run for a worker (the page, or `worker`); prints its id")):
        c = sub.add_parser(name, help=about)
        c.add_argument("--from", dest="source", required=True, help="prompt | parameter | reward")
        c.add_argument("--to", dest="target", required=True, help="prompt | parameter | reward")
        c.add_argument("--scenario", help="built-in name or path to a scenario JSON file (default with "
                                          "--source-run: that run's scenario)")
        c.add_argument("--method", help="the edge's method (default: its first)")
        for flag, field in SHORTCUTS.items():
            c.add_argument(flag, dest=field, help=PRESET_HELP + " (log-ratio: or a steering preset)" if
                           field == "preset" else f"the config field {field} (same as --set {field}=...)")
        _add_sets(c)
    wk = sub.add_parser("worker", help="run queued runs one at a time until stopped (SIGTERM/Ctrl-C: after the "
                                       "current run); several workers can serve one database")
    wk.add_argument("--until-idle", action="store_true", help="stop when no run is left in the queue")
    wk.add_argument("--json", action="store_true")
    rr = sub.add_parser("rerun", help="queue a new run with the settings of RUN_ID")
    rr.add_argument("run_id")
    rr.add_argument("--json", action="store_true")
    b = sub.add_parser("bon", help="best-of-N with a reward: reference reward vs N, with the KL bound")
    b.add_argument("--scenario", required=True, help="built-in name or path to a scenario JSON file")
    b.add_argument("--n", help="comma list of N (default 1,2,4,8,16)")
    b.add_argument("--reward", help="selection reward: a run id (default: the reference reward)")
    b.add_argument("--policy", help="base (default), prompt, scenario:NAME or a run id")
    b.add_argument("--preset", help=PRESET_HELP)
    _add_sets(b)
    rm = sub.add_parser("reward-model", help="an outcome reward model (Sun et al. Eq. 8) learned from replies "
                                             "labelled by the scenario's golden metric, with best-of-N under it")
    rm.add_argument("--scenario", required=True, help="built-in name or path to a scenario JSON file")
    rm.add_argument("--method", default="outcome", help="outcome (Eq. 8, default) or pairwise (Eq. 4)")
    rm.add_argument("--policy", help="prompt (default), base, scenario:NAME or a run id")
    rm.add_argument("--demonstrations", help=DEMOS_HELP)
    rm.add_argument("--preset", help=PRESET_HELP)
    _add_sets(rm)
    sf = sub.add_parser("sft", help="a policy learned from expert demonstrations: supervised fine-tuning (Sun et "
                                    "al. §3.1.1) or adversarial imitation (§4.2, Eqs. 5–7: --method adversarial)")
    sf.add_argument("--scenario", required=True, help="built-in name or path to a scenario JSON file")
    sf.add_argument("--method", default="sft", help="sft (default) or adversarial")
    sf.add_argument("--demonstrations", help=DEMOS_HELP)
    sf.add_argument("--preset", help=PRESET_HELP)
    _add_sets(sf)
    t1 = sub.add_parser("table1", help="Sun et al.'s Table 1 live: zero-shot, few-shot, prompt search, SFT, RL "
                                       "(golden / learned reward), best-of-N and joint strategies on one task")
    t1.add_argument("--scenario", required=True, help="built-in name or path to a scenario JSON file")
    t1.add_argument("--preset", help="quick (default), default or tiny: the sizes of the runs behind the rows")
    t1.add_argument("--demonstrations", help=DEMOS_HELP)
    _add_sets(t1)
    cp = sub.add_parser("compare", help="policies of one scenario side by side on the same held-out inputs and "
                                        "seed: rewards ± s.e., the exact KL matrix, KL to π0 per reply")
    cp.add_argument("--scenario", required=True, help="built-in name or a scenario a stored run used")
    cp.add_argument("--policies", required=True, help="comma list: base, prompt, scenario:NAME, run ids "
                                                      "(base is always added)")
    cp.add_argument("--reward", default="", help="also score with a stored reward (a run id)")
    _add_sets(cp)
    ch = sub.add_parser("chain", help="a round trip: run the edges of a path in turn, each hop feeding the next")
    ch.add_argument("--scenario", help="built-in name or scenario file (default with --source-run: its scenario)")
    ch.add_argument("--path", required=True, help="vertices, e.g. prompt,parameter,prompt")
    ch.add_argument("--methods", default="", help="one method per hop, comma separated (empty = the edge's first)")
    ch.add_argument("--source-run", dest="source_run", default="",
                    help="the adapter a path that starts at parameter starts from")
    ch.add_argument("--set", dest="sets", action="append", default=[], metavar="[N.|chain.]KEY=VALUE",
                    help="KEY=VALUE: every hop that has KEY; N.KEY=VALUE: hop N; chain.KEY=VALUE: the measuring")
    ch.add_argument("--json", action="store_true", help="print one JSON object")
    r = sub.add_parser("runs", help="list stored runs")
    r.add_argument("--scenario"), r.add_argument("--edge")
    r.add_argument("--json", action="store_true")
    s = sub.add_parser("show", help="show one run")
    s.add_argument("run_id")
    s.add_argument("--json", action="store_true")
    x = sub.add_parser("export", help="write runs (config, metrics, artifacts, curves, samples) as JSON or CSV")
    x.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    x.add_argument("--format", default="json", choices=("json", "csv", "samples-csv"),
                   help="json: everything; csv: one row per run; samples-csv: one row per generation")
    x.add_argument("--out", help="file to write (default: stdout)")
    a = sub.add_parser("artifact", help="write a run's artifact as one file: the adapter as a zip of its PEFT "
                                        "folder, a prompt as text, a reward spec as JSON")
    a.add_argument("run_id")
    a.add_argument("--out", default=".", help="folder to write it in (default: here)")
    a.add_argument("--json", action="store_true")
    d = sub.add_parser("delete", help="delete a finished run with its curves, samples, artifacts and files")
    d.add_argument("run_id")
    d.add_argument("--json", action="store_true")
    e = sub.add_parser("edges", help="list edges, methods and their settings")
    e.add_argument("--json", action="store_true")
    i = sub.add_parser("info", help="the model host: model, device, CPU capability and the chosen precision")
    i.add_argument("--json", action="store_true")
    g = sub.add_parser("gallery", help="run the example runs at their defaults and write the gallery bundle")
    g.add_argument("--out", help="the bundle's folder (default: assets/gallery)")
    g.add_argument("--json", action="store_true")
    m = sub.add_parser("prepare-model", help="convert the model once to the safetensors cache and load it")
    m.add_argument("--json", action="store_true")
    return p


def convert_summary(run: dict) -> dict:
    artifact = (run.get("artifacts") or [{}])[0]
    return {"run_id": run["run_id"], "status": run["status"], "edge": run["edge"], "method": run["method"],
            "scenario": run["scenario"], "duration_s": run["duration_s"], "metrics": run["metrics"],
            "artifact": {**(artifact.get("data") or {}), "kind": artifact.get("kind"), "path": artifact.get("path"),
                         "data": artifact.get("data") or {}},
            "error": run["error"]}


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("LAB_MODEL", "embedded").startswith("embedded"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except LabInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# the commands that load the model: without one to load they stop before anything runs (exit 2, one line)
MODEL_COMMANDS = {"prepare-model", "info", "gallery", "convert", "bon", "reward-model", "sft", "table1", "chain", "compare"}


def _dispatch(args) -> int:
    from engine.api import Lab
    if args.command in MODEL_COMMANDS:
        from engine.model_loading import effective_model
        from engine.settings import load_settings
        model = effective_model(load_settings().model)   # raises ModelUnavailable, a LabInputError
    if args.command == "prepare-model":
        import time

        from engine.model_loading import load_model_and_tokenizer
        settings = load_settings()
        t0 = time.perf_counter()
        lm, _, load_s = load_model_and_tokenizer(model, settings.model_cache_dir)
        n = sum(p.numel() for p in lm.parameters())
        return _print({"model": model, "parameters": n, "load_s": round(load_s, 2),
                       "total_s": round(time.perf_counter() - t0, 2)}, args.json)
    if args.command == "info":
        return _print(Lab().host_info(), args.json)
    if args.command == "gallery":
        from pathlib import Path

        from engine.gallery import GALLERY_DIR, gallery_settings, make_gallery
        log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
        lab = Lab(settings=gallery_settings(load_settings()))
        return _print(make_gallery(lab, Path(args.out) if args.out else GALLERY_DIR, on_line=log), args.json)
    if args.command == "edges":
        out = [{**e, "methods": {m: {"fields": Lab.method_fields(e["from"], e["to"], m)} for m in e["methods"]}}
               for e in Lab.edges()]
        return _print(out, args.json)
    if args.command in ("convert", "submit"):
        lab = Lab()
        overrides = convert_overrides(args)
        scenario = args.scenario or lab.scenario_of_run(overrides.get("source_run"))
        request = lab.prepare(args.source, args.target, args.method, scenario, overrides)
        if args.command == "submit":
            return _print({"run_id": lab.enqueue(request), "status": "queued"}, True)
        return _finish(lab, lab.run_now(request), args.json)
    if args.command == "worker":
        return _worker(Lab(), args.until_idle)
    if args.command == "rerun":
        lab = Lab()
        return _print({"run_id": lab.enqueue_rerun(args.run_id), "status": "queued", "rerun_of": args.run_id}, True)
    if args.command == "bon":
        lab = Lab()
        overrides = _parse_sets(args.sets) | _given(args, "n", "reward", "policy", "preset")
        run_id = lab.run_now(lab.prepare_task("best-of-n", "bon", args.scenario, overrides))
        run = lab.run(run_id)
        _print({"run_id": run_id, "status": run["status"], "scenario": run["scenario"],
                "results": (run["metrics"] or {}).get("results"), "error": run["error"]}, args.json)
        return _exit_status(run)
    if args.command == "reward-model":
        lab = Lab()
        overrides = _parse_sets(args.sets) | _given(args, "policy", "preset")
        scenario = scenario_with_demonstrations(args.scenario, args.demonstrations)
        return _finish(lab, lab.run_now(lab.prepare_task("reward-model", args.method, scenario, overrides)),
                       args.json)
    if args.command == "sft":
        lab = Lab()
        scenario = scenario_with_demonstrations(args.scenario, args.demonstrations)
        request = lab.prepare_task("demonstrations", args.method, scenario,
                                   _parse_sets(args.sets) | _given(args, "preset"))
        return _finish(lab, lab.run_now(request), args.json)
    if args.command == "table1":
        from engine.table1 import table1_summary
        lab = Lab()
        scenario = scenario_with_demonstrations(args.scenario, args.demonstrations)
        run = lab.run(lab.table1(scenario, _parse_sets(args.sets) | _given(args, "preset")))
        _print(table1_summary(run), args.json)
        return _exit_status(run)
    if args.command == "chain":
        return _chain(Lab(), args)
    if args.command == "compare":
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        res = Lab().compare(args.scenario, policies, args.reward, _parse_sets(args.sets))
        return _print({k: v for k, v in res.items() if k != "samples"} | {"n_samples": len(res["samples"])},
                      args.json)
    lab = Lab()
    if args.command == "runs":
        return _print(lab.runs(scenario=args.scenario, edge=args.edge), args.json)
    if args.command == "export":
        return _export(lab, args.run_ids, args.format, args.out)
    if args.command == "delete":
        return _print(lab.delete_run(args.run_id), True)
    if args.command == "artifact":
        return _print({"run_id": args.run_id, "out": lab.artifact_file(args.run_id, args.out)}, True)
    run = lab.run(args.run_id)
    if run is None:
        raise LabInputError(f"no run with id {args.run_id!r}; list them with `python -m engine runs`")
    run["points"] = lab.points(args.run_id)
    run["samples"] = lab.samples(args.run_id)
    return _print(run, args.json)


def _worker(lab, until_idle: bool) -> int:
    """Execute queued runs, one JSON line per finished run; the first SIGTERM or Ctrl-C stops after the
    current run (a second one stops at once: the run is then marked interrupted by the next start-up)."""
    import signal

    from engine.jobs import OWNER

    def stop(signum, _frame):
        print(f"worker {OWNER}: stopping after the current run (again to stop now)", file=sys.stderr, flush=True)
        lab.jobs.stop()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"worker": OWNER, "database": lab.store.engine.url.render_as_string(),
                      "queued": len(lab.queue())}), flush=True)

    def finished(run: dict) -> None:
        print(json.dumps({k: run[k] for k in ("run_id", "status", "edge", "method", "scenario", "duration_s")}),
              flush=True)
    n = lab.jobs.work(until_idle=until_idle, on_finished=finished)
    print(json.dumps({"worker": OWNER, "runs": n}), flush=True)
    return 0


def _chain(lab, args) -> int:
    from engine.chain import chain_summary, prepare_chain, run_chain
    from engine.scenarios import load_scenario, parse_scenario
    scenario = (load_scenario(args.scenario) if args.scenario
                else parse_scenario(lab.scenario_of_run(args.source_run or None)))
    methods = [m.strip() for m in args.methods.split(",")] if args.methods.strip() else None
    request = prepare_chain(args.path, scenario, methods, _parse_sets(args.sets), args.source_run,
                            lookup=lab.store.get_run)
    run = lab.run(run_chain(lab, request))
    _print(chain_summary(run), args.json)
    return _exit_status(run)


def _export(lab, run_ids: list[str], fmt: str, out: str | None) -> int:
    """The runs as text to --out (then a JSON note of what was written), or to stdout without it."""
    text = lab.export(run_ids, fmt)
    if not out or out == "-":
        sys.stdout.write(text)
        return 0
    from pathlib import Path
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return _print({"out": str(path.resolve()), "format": fmt, "runs": run_ids}, True)


def _finish(lab, run_id: str, as_json: bool) -> int:
    run = lab.run(run_id)
    _print(convert_summary(run), as_json)
    return _exit_status(run)


def _exit_status(run: dict) -> int:
    if run["status"] != "succeeded":
        print(f"run {run['run_id']} {run['status']}: {run['error']}", file=sys.stderr)
        return 1
    return 0


def _print(obj, as_json: bool) -> int:
    """JSON either way: `--json` is accepted for scripts that state it; indented JSON reads fine in a terminal."""
    print(json.dumps(obj, indent=1, default=str))
    return 0
