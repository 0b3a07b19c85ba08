"""SimPO in reward -> parameter: a method added as one file (engine/edges/reward_to_parameter_simpo.py) plus this test."""
import math

import torch

from engine.lora import lora_config
from engine.policies import with_adapter
from engine.registry import config_fields, get_edge, get_method
from engine.edges.reward_to_parameter import sequence_logps
from engine.edges.reward_to_parameter_simpo import SimPOConfig, simpo_loss, simpo_step
from engine.evaluation import Scored
from engine.training import update


def test_simpo_loss_on_hand_made_numbers():
    # pair 1: β·(−4/2) − β·(−9/3) − γ = 2·(−2) − 2·(−3) − 1 = 1;  pair 2: 2·(−1) − 2·(−1) − 1 = −1
    loss = simpo_loss(torch.tensor([-4.0, -1.0]), torch.tensor([-9.0, -2.0]), torch.tensor([2.0, 1.0]),
                      torch.tensor([3.0, 2.0]), beta=2.0, gamma=1.0)
    want = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(1.0))) / 2      # −log σ(1), −log σ(−1)
    assert math.isclose(loss.item(), want, rel_tol=1e-6)


def test_simpo_registers_with_its_own_setting_beside_the_shared_ones():
    spec = get_method(get_edge("reward", "parameter"), "simpo")
    names = [f["name"] for f in config_fields(spec)]
    assert "gamma" in names and {"k", "lr", "lora_rank", "precision"} <= set(names)
    assert "gamma" not in [f["name"] for f in config_fields(get_method(get_edge("reward", "parameter"), "dpo"))]
    assert spec.artifact == "adapter" and spec.defaults["beta"] == 2.0


def test_one_simpo_update_raises_the_better_reply_over_the_worse(host):
    xs = ["Describe your morning."] * 2
    ys = [host.reply_ids("What a lovely bright morning!"), host.reply_ids("It was grey and dull.")]
    batch = Scored("trained", xs, ["", ""], ys, [1.0, 0.0], [0, 1])
    torch.manual_seed(0)
    host.add_lora("simpo", lora_config(4, 8.0))
    try:
        policy, params = with_adapter("simpo"), host.trainable_parameters("simpo")
        opt = torch.optim.SGD(params, lr=0.5)
        margin = lambda: (lambda lp: float(lp[0] / len(ys[0]) - lp[1] / len(ys[1])))(
            sequence_logps(host, policy, xs, ys, False))
        before = margin()
        for _ in range(2):  # LoRA's B starts at zero: the first step only moves B
            update(opt, params, simpo_step(SimPOConfig(k=2, beta=2.0, gamma=1.0), host, policy, batch)[0])
        host.model.eval()
        assert margin() > before + 1e-3
    finally:
        host.delete_adapter("simpo")
