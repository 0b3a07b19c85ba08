"""Exporting stored runs: pure functions from run bundles to text (JSON, CSV). No I/O, no torch.

A bundle is one stored run as `Store.get_run` returns it, plus its "points" and "samples".
  json         everything: config, metrics, artifacts, curves, samples (reads back with json.loads)
  csv          one row per run: its fields, then metric.*, config.* and artifact.* columns
  samples-csv  one row per generation of every run: run_id, policy, input, output, reward, ...
Values that are not scalars (a list of best-of-N results, ...) go into CSV cells as JSON text.
"""
from __future__ import annotations

import csv
import io
import json

from engine.errors import LabInputError

RUN_COLUMNS = ("run_id", "created_at", "started_at", "finished_at", "duration_s", "edge", "method", "scenario",
               "status", "error", "artifact_kind", "artifact_path")
SAMPLE_COLUMNS = ("run_id", "policy", "input", "output", "reward", "sample_index")
FORMAT_VERSION = "triangle-lab runs 1"


def to_json(bundles: list[dict]) -> str:
    return json.dumps({"format": FORMAT_VERSION, "runs": bundles}, indent=1, default=str, ensure_ascii=False)


def runs_csv(bundles: list[dict]) -> str:
    """One row per run; the metric/config/artifact columns are the union over the runs, sorted."""
    rows = [_flat_run(b) for b in bundles]
    extra = sorted({k for r in rows for k in r} - set(RUN_COLUMNS), key=_column_order)
    return _csv(list(RUN_COLUMNS) + extra, rows)


def samples_csv(bundles: list[dict]) -> str:
    """Every stored generation; edge-specific numbers (a derived reward, ...) as extra columns."""
    rows = [{"run_id": b["run_id"], **s} for b in bundles for s in b.get("samples") or []]
    extra = sorted({k for r in rows for k in r} - set(SAMPLE_COLUMNS))
    return _csv(list(SAMPLE_COLUMNS) + extra, rows)


FORMATS = {"json": to_json, "csv": runs_csv, "samples-csv": samples_csv}
SUFFIX = {"json": "json", "csv": "csv", "samples-csv": "samples.csv"}


def export(bundles: list[dict], fmt: str) -> str:
    if fmt not in FORMATS:
        raise LabInputError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return FORMATS[fmt](bundles)


def _flat_run(b: dict) -> dict:
    artifact = (b.get("artifacts") or [{}])[0]
    row = {k: b.get(k) for k in RUN_COLUMNS if k in b}
    row |= {"artifact_kind": artifact.get("kind"), "artifact_path": artifact.get("path")}
    row |= {f"metric.{k}": v for k, v in (b.get("metrics") or {}).items()}
    row |= {f"config.{k}": v for k, v in ((b.get("config") or {}).get("method_config") or {}).items()}
    row |= {f"artifact.{k}": v for k, v in (artifact.get("data") or {}).items()}
    return row


def _column_order(name: str) -> tuple[int, str]:
    return ({"metric": 0, "config": 1, "artifact": 2}.get(name.split(".", 1)[0], 3), name)


def _csv(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    return buf.getvalue()


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str, ensure_ascii=False)
    return v
