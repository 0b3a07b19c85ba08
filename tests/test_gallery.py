"""The gallery (engine/gallery.py): a bundle written from one lab imports into another's empty database with
its ids, files and curves; its runs belong to "example" (only an admin or the CLI deletes them); the shipped
bundle holds every example, finished, and its adapter steers a real run here."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.errors import LabInputError
from engine.gallery import EXAMPLES, GALLERY_DIR, ROUND_TRIP, bundle_bytes, import_gallery, load_bundle, write_bundle
from engine.visitors import OPERATOR, Visitor


def _lab(settings, host, data_dir: Path, **changes):
    from engine.api import Lab
    data_dir.mkdir(parents=True, exist_ok=True)
    s = dataclasses.replace(settings, data_dir=data_dir, db_url=f"sqlite:///{data_dir / 'lab.sqlite'}", **changes)
    return Lab(settings=s, host_factory=lambda: host)


def _stored_adapter_run(lab) -> str:
    rid = lab.store.create_run("prompt->parameter", "kl", "sentiment", {"method_config": {"steps": 2}},
                               status="running")
    folder = lab.settings.artifacts_dir / rid / "adapter"
    folder.mkdir(parents=True)
    save_file({"lora_A": torch.tensor([[0.0123456, -1.5]]), "steps": torch.tensor([3])},
              str(folder / "adapter_model.safetensors"), {"format": "pt"})
    lab.store.add_points(rid, 1, {"loss": 0.5, "kl_heldout": 0.2})
    lab.store.add_samples(rid, [{"policy": "student", "input": "Hi", "output": "Hello!", "reward": 0.6,
                                 "sample_index": 0, "logratio": 1.5}])
    lab.store.add_artifact(rid, "adapter", "parameter", str(folder), {"adapter_name": f"cd-{rid}"})
    lab.store.mark_finished(rid, "succeeded", {"kl_before": 0.2, "kl_after": 0.05})
    lab.store.update_run(rid, model=lab.model)
    return rid


def test_a_bundle_imports_into_an_empty_database_with_its_ids_files_and_curves(settings, host, tmp_path):
    source = _lab(settings, host, tmp_path / "maker")
    rid = _stored_adapter_run(source)
    reward = source.store.create_run("parameter->reward", "log-ratio", "sentiment",
                                     {"method_config": {"source_run": rid}}, status="running")
    spec = {"kind": "log-ratio", "star": {"adapter_path": str(source.settings.artifacts_dir / rid / "adapter")}}
    source.store.add_artifact(reward, "reward", "reward", None, spec)
    source.store.mark_finished(reward, "succeeded", {"pair_accuracy": 0.9})
    examples = [{"name": "distill", "title": "prompt → parameter", "run_id": rid},
                {"name": "steer", "title": "parameter → reward", "run_id": reward}]
    out = tmp_path / "bundle"
    write_bundle(source, [rid, reward], examples, None, {"model": source.model, "commit": "abc"}, out)
    text = (out / "gallery.json").read_text(encoding="utf-8")
    assert str(tmp_path / "maker") not in text and "{artifacts}/" in text   # no path of the machine that made it
    shipped_weights = load_file(str(out / "files" / rid / "adapter" / "adapter_model.safetensors"))
    assert shipped_weights["lora_A"].dtype == torch.float16 and shipped_weights["steps"].dtype == torch.int64
    assert bundle_bytes(out) == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

    assert import_gallery(_lab(settings, host, tmp_path / "third"), out) == 2
    lab = _lab(settings, host, tmp_path / "third")
    run = lab.run(rid)
    assert run["status"] == "succeeded" and run["visitor"] == "example" and run["metrics"]["kl_after"] == 0.05
    path = Path(run["artifacts"][0]["path"])
    assert path == (tmp_path / "third" / "artifacts" / rid / "adapter").resolve() and path.is_dir()
    weights = load_file(str(path / "adapter_model.safetensors"))   # back in fp32, within fp16's rounding
    assert weights["lora_A"].dtype == torch.float32 and torch.allclose(weights["lora_A"], torch.tensor(
        [[0.0123456, -1.5]]), rtol=1e-3) and weights["steps"].tolist() == [3]
    assert lab.run(reward)["artifacts"][0]["data"]["star"]["adapter_path"] == str(path)   # paths inside data too
    assert lab.points(rid) == [{"name": "loss", "step": 1, "value": 0.5}, {"name": "kl_heldout", "step": 1, "value": 0.2}]
    assert lab.samples(rid)[0]["logratio"] == 1.5
    assert import_gallery(lab, out) == 0                                     # not empty any more: nothing twice
    other = _lab(settings, host, tmp_path / "gemma", model="embedded:gemma3-270m")
    assert import_gallery(other, out) == 0 and other.runs() == []          # another model's adapters do not fit


def test_example_runs_are_deleted_only_by_an_admin_or_the_cli(settings, host, tmp_path):
    maker = _lab(settings, host, tmp_path / "maker")
    rid = _stored_adapter_run(maker)
    write_bundle(maker, [rid], [{"name": "distill", "title": "t", "run_id": rid}], None, {"model": maker.model}, tmp_path / "b")
    for multi_user in (False, True):
        lab = _lab(settings, host, tmp_path / f"lab-{multi_user}", multi_user=multi_user)
        assert import_gallery(lab, tmp_path / "b") == 1
        with pytest.raises(LabInputError, match=f"run {rid} is an example of the gallery: only its owner or an admin"):
            lab.delete_run(rid, Visitor(id="v:student"))
        from engine.visitors import owner_label
        assert owner_label(lab.run(rid), Visitor(id="v:student")) == "example"
    assert lab.delete_run(rid, Visitor(id="v:teacher", admin=True))["deleted"]
    lab = _lab(settings, host, tmp_path / "lab-False")
    assert lab.delete_run(rid, OPERATOR)["deleted"] and not (lab.settings.artifacts_dir / rid).exists()


# ---------- the shipped bundle ----------
shipped = pytest.mark.skipif(load_bundle() is None, reason="assets/gallery/gallery.json is not made yet (make gallery)")


@shipped
def test_the_shipped_gallery_holds_every_example_finished_small_and_with_provenance():
    data = load_bundle()
    names = [e["name"] for e in data["examples"]]
    assert names == [e[0] for e in EXAMPLES] + [ROUND_TRIP[0]]
    runs = {r["run_id"]: r for r in data["runs"]}
    for e in data["examples"]:
        run = runs[e["run_id"]]
        assert run["status"] == "succeeded" and run["metrics"] and run["duration_s"] > 0, e["name"]
    tasks = {runs[e["run_id"]]["edge"] for e in data["examples"]}
    assert {"prompt->parameter", "parameter->prompt", "parameter->reward", "prompt->reward", "reward->parameter",
            "reward->prompt", "best-of-n", "reward-model", "chain"} <= tasks
    assert set(data["provenance"]) >= {"commit", "model", "machine", "precision", "created", "wall_s"}
    assert data["compare"]["policies"] and bundle_bytes(GALLERY_DIR) < 8_000_000
    from app.views import compare_table
    table = compare_table(data["compare"])     # one column per policy; a reply the bundle did not keep shows "—"
    assert len(table.columns) == 1 + len(data["compare"]["policies"]) and len(table) > 0
    assert "/work/" not in json.dumps(data) and "/tmp/" not in json.dumps(data)   # portable


@shipped
def test_a_fresh_lab_opens_on_the_gallery_and_its_example_adapter_drives_a_real_run(settings, host, tmp_path):
    from app.main import gallery_markdown, opening_run
    from engine.gallery import examples
    lab = _lab(settings, host, tmp_path / "fresh", gallery=True, multi_user=True)
    shown = examples(lab)
    assert [e["name"] for e in shown] == [e[0] for e in EXAMPLES] + [ROUND_TRIP[0]]
    distill = shown[0]["run_id"]
    assert opening_run(lab, None, Visitor(id="v:new")) == distill      # a newcomer opens on a finished example
    assert f"(?run={distill})" in gallery_markdown(lab)
    from app.main import build_app
    build_app(lab)                         # the whole page builds on it (Compare opens on the example compare)
    run = lab.run(lab.run_now(lab.prepare_task("best-of-n", "bon", "sentiment", {
        "policy": distill, "n": "1,2", "n_heldout": 2, "max_new_tokens": 8})))
    assert run["status"] == "succeeded", run["error"]
    assert lab.samples(run["run_id"])[0]["policy"] == f"adapter of {distill}"


def test_the_bundle_keeps_every_policys_replies_on_the_first_inputs():
    from engine.gallery import first_inputs
    samples = [{"policy": p, "input": x, "sample_index": k} for p in "abc" for x in ("x1", "x2", "x3") for k in (0, 1)]
    kept = first_inputs(samples, n_inputs=2)
    assert {s["policy"] for s in kept} == {"a", "b", "c"} and {s["input"] for s in kept} == {"x1", "x2"}
    assert len(kept) == 3 * 2 * 2
