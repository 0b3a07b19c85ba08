"""The edge registry and config validation: what the page's menus and the CLI's --set rely on."""
import dataclasses

import pytest

from engine.errors import LabInputError
from engine.jobs import prepare
from engine.registry import EDGES, build_config, config_fields, get_edge, get_method, restore_config


def test_six_edges_listed_and_prompt_to_parameter_built():
    assert len(EDGES) == 6
    assert {e.name for e in EDGES.values()} == {"prompt->parameter", "parameter->prompt", "reward->parameter",
                                                 "parameter->reward", "prompt->reward", "reward->prompt"}
    assert set(get_edge("prompt", "parameter").methods) == {"kl", "imitation"}


def test_method_defaults_and_overrides_are_typed():
    edge = get_edge("prompt", "parameter")
    assert build_config(get_method(edge, "imitation"), {}).lr == 1e-4
    cfg = build_config(get_method(edge, "kl"), {"steps": "12", "lr": "5e-4", "precision": "fp32"})
    assert (cfg.steps, cfg.lr, cfg.precision) == (12, 5e-4, "fp32")
    assert build_config(get_method(edge, "kl"), {}).precision == "auto"


@pytest.mark.parametrize("old, new", [("false", "fp32"), (False, "fp32"), ("true", "auto"), (True, "auto")])
def test_old_bf16_settings_still_load_as_precision(old, new):
    """`bf16` became `precision`: old CLI flags and stored configs keep working (true was the old default)."""
    spec = get_method(get_edge("prompt", "parameter"), "kl")
    assert build_config(spec, {"bf16": old}).precision == new
    stored = dataclasses.asdict(build_config(spec, {"steps": "7"}))
    stored.pop("precision")
    assert restore_config(spec, stored | {"bf16": old}) == build_config(spec, {"steps": "7", "precision": new})


@pytest.mark.parametrize("overrides, message", [
    ({"stepz": "3"}, "stepz: unknown setting"),
    ({"steps": "ten"}, "steps: 'ten' is not a whole number"),
    ({"steps": "2.5"}, "steps: '2.5' is not a whole number"),
    ({"steps": "0"}, "steps: 0 is out of range"),
    ({"lr": "nan"}, "lr: 'nan' is not a number"),
    ({"lr": "5"}, "lr: 5.0 is out of range"),
    ({"lora_targets": "q_proj,banana"}, "banana is not a module"),
])
def test_bad_settings_are_clear(overrides, message):
    spec = get_method(get_edge("prompt", "parameter"), "kl")
    with pytest.raises(LabInputError, match=message):
        build_config(spec, overrides)


@pytest.mark.parametrize("args, message", [
    (("prompt", "banana", None, "sentiment"), "vertex 'banana' is unknown"),
    (("prompt", "prompt", None, "sentiment"), "must be different"),
    (("prompt", "parameter", "sgd", "sentiment"), "method 'sgd' is unknown"),
    (("prompt", "parameter", "kl", "nosuch"), "neither a built-in"),
])
def test_bad_requests_are_refused_before_anything_is_written(args, message):
    with pytest.raises(LabInputError, match=message):
        prepare(*args)


def test_the_registry_refuses_an_artifact_off_the_edges_target_vertex():
    from engine.artifacts import Adapter, ReadablePrompt
    from engine.methods import check_artifact, register
    with pytest.raises(ValueError, match="target vertex 'parameter', not 'reward'"):
        register("prompt->parameter", "wrong", title="", equation="", config=object, run=None, metrics=(),
                 artifact="reward")
    spec = get_method(get_edge("prompt", "parameter"), "kl")
    check_artifact(spec, Adapter("/tmp/adapter", {}))
    assert (Adapter().vertex, ReadablePrompt().vertex) == ("parameter", "prompt")
    with pytest.raises(RuntimeError, match="declared artifact 'adapter' but made 'prompt'"):
        check_artifact(spec, ReadablePrompt(None, {"prompt_text": "Be kind."}))
    with pytest.raises(RuntimeError, match="declared artifact 'adapter' but made 'dict'"):
        check_artifact(spec, {"kind": "adapter", "vertex": "parameter"})   # untyped: refused


def test_configs_are_built_from_shared_pieces_with_one_meaning_per_setting():
    from engine.config_pieces import HeldOut, LoRA, Training
    from engine.edges.prompt_to_parameter import DistillConfig
    from engine.edges.reward_to_parameter import RLConfig
    for cls in (DistillConfig, RLConfig):
        assert issubclass(cls, (Training, LoRA, HeldOut))
    rl = {f["name"]: f for f in config_fields(get_method(get_edge("reward", "parameter"), "rloo"))}
    cd = {f["name"]: f for f in config_fields(get_method(get_edge("prompt", "parameter"), "kl"))}
    for shared in ("lora_rank", "lora_targets", "eval_temperature", "lr", "precision"):
        assert rl[shared]["help"] == cd[shared]["help"] and rl[shared]["hi"] == cd[shared]["hi"]
    assert (rl["steps"]["default"], cd["steps"]["default"], rl["lr"]["default"]) == (20, 160, 2e-3)
    assert (rl["batch_size"]["default"], cd["batch_size"]["default"]) == (8, 2)   # a method's defaults are its own
    # a form lists the method's own settings first, then the pieces' (training, LoRA, held-out, compute)
    names = list(rl)
    assert names[:5] == ["reward", "init", "prompt", "k", "beta"] and names[-2:] == ["precision", "seed"]
    assert names.index("steps") < names.index("lora_rank") < names.index("n_heldout")
    with pytest.raises(LabInputError, match="lora_targets"):   # a piece's own check runs in every config
        build_config(get_method(get_edge("reward", "parameter"), "rloo"), {"lora_targets": "nosuch"})


def test_every_method_has_a_quick_preset_of_its_own_settings_that_given_settings_override():
    from engine.methods import REGISTRY
    from engine.registry import preset_settings, with_preset
    for task, methods in REGISTRY.items():
        for name, spec in methods.items():
            fields = {f["name"]: f for f in config_fields(spec)}
            assert spec.quick and set(spec.quick) <= set(fields), (task, name)
            quick, default = preset_settings(spec, "quick"), preset_settings(spec, "default")
            changed = {k for k in quick if quick[k] != default[k]}
            assert changed == set(spec.quick), (task, name, changed)   # each quick setting moves off the default
            if "n_heldout" in spec.quick:                              # measured on fewer inputs, never more
                assert 0 < quick["n_heldout"] < (default["n_heldout"] or 32), (task, name)
    rloo = get_method(get_edge("reward", "parameter"), "rloo")
    assert build_config(rloo, {"preset": "quick", "steps": "5"}).steps == 5            # --set beats the preset
    assert build_config(rloo, {"preset": "quick"}).batch_size == 4 and build_config(rloo, {}).batch_size == 8
    assert build_config(rloo, {"preset": "default"}) == build_config(rloo, {})
    log_ratio = get_method(get_edge("parameter", "reward"), "log-ratio")
    assert with_preset(log_ratio, {"preset": "proxy-tuning"}) == {"preset": "proxy-tuning"}   # its steering preset
    assert with_preset(log_ratio, {"preset": "quick"}) == {"n_heldout": 8, "eval_samples": 2}
    with pytest.raises(LabInputError, match="preset: 'fast' is not a preset; choose default or quick"):
        preset_settings(rloo, "fast")
