"""LAMB and LARS: steps and trust ratios against a hand computation, zero-norm tensors, state_dict
round trip, composition with Lookahead, and selection from the config."""

import copy

import pytest
import torch

from aeon_trl.config import Config, ConfigError
from aeon_trl.optim.build import build_optimizer
from aeon_trl.optim.layerwise import Lamb, Lars, trust_ratio
from aeon_trl.optim.lookahead import Lookahead


def _params():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 4) * 2.0)
    b = torch.nn.Parameter(torch.zeros(4))  # a zero-initialised bias: trust ratio 1
    return [w, b]


def _grads(step):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(3, 4, generator=g), torch.randn(4, generator=g)]


def naive_lamb(params, grads_per_step, lr, beta1=0.9, beta2=0.999, eps=1e-6, wd=0.0):
    """LAMB (You et al. 2020, Algorithm 2) written out with plain tensors, one tensor at a time."""
    params = [p.detach().clone().double() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    ratios = []
    for t, grads in enumerate(grads_per_step, start=1):
        ratios = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g.double()
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            r = (m[i] / (1 - beta1 ** t)) / (torch.sqrt(v[i] / (1 - beta2 ** t)) + eps) + wd * p
            w_norm, r_norm = torch.sqrt((p * p).sum()), torch.sqrt((r * r).sum())
            ratio = (w_norm / r_norm).item() if w_norm > 0 and r_norm > 0 else 1.0
            ratios.append(ratio)
            params[i] = p - lr * ratio * r
    return params, ratios


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_lamb_matches_the_hand_computation(wd):
    params = _params()
    expected, ratios = naive_lamb(params, [_grads(s) for s in range(3)], lr=0.01, wd=wd)
    opt = Lamb(params, lr=0.01, weight_decay=wd)
    for s in range(3):
        for p, g in zip(params, _grads(s)):
            p.grad = g.clone()
        opt.step()
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)
    got = [opt.state[p]["trust_ratio"].item() for p in params]
    assert got == pytest.approx(ratios, rel=1e-5)
    assert ratios[1] != 1.0 or wd == 0.0  # after one step the bias is no longer zero


def test_lamb_first_step_moves_each_tensor_by_lr_times_its_norm():
    # At t=1, m_hat/sqrt(v_hat) = sign(g) (up to eps), so ||u|| = sqrt(numel) and the step is lr * ||w||.
    params = _params()
    before = [p.detach().clone() for p in params]
    opt = Lamb(params, lr=0.01)
    for p, g in zip(params, _grads(0)):
        p.grad = g
    opt.step()
    w_step = (params[0].detach() - before[0]).norm()
    assert w_step.item() == pytest.approx(0.01 * before[0].norm().item(), rel=1e-4)
    assert opt.state[params[0]]["trust_ratio"].item() == pytest.approx(before[0].norm().item() / 12 ** 0.5, rel=1e-4)
    # the zero bias has ratio 1: a plain Adam first step of lr per coordinate
    assert opt.state[params[1]]["trust_ratio"].item() == 1.0
    torch.testing.assert_close(params[1].detach().abs(), torch.full((4,), 0.01), rtol=1e-4, atol=0)


def test_trust_ratio_handles_zero_norms():
    assert trust_ratio(torch.tensor(0.0), torch.tensor(2.0)).item() == 1.0
    assert trust_ratio(torch.tensor(3.0), torch.tensor(0.0)).item() == 1.0
    assert trust_ratio(torch.tensor(3.0), torch.tensor(2.0)).item() == 1.5


def test_lars_matches_the_hand_computation():
    params = _params()
    w0 = params[0].detach().clone().double()
    opt = Lars(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    buf, w = torch.zeros_like(w0), w0
    for s in range(2):
        g = _grads(s)[0].double()
        params[0].grad, params[1].grad = _grads(s)[0], None
        opt.step()
        g = g + 0.01 * w
        ratio = (w.norm() / g.norm()).item()
        buf = 0.9 * buf + ratio * g
        w = w - 0.1 * buf
        assert opt.state[params[0]]["trust_ratio"].item() == pytest.approx(ratio, rel=1e-5)
    torch.testing.assert_close(params[0].detach().double(), w, rtol=1e-5, atol=1e-6)
    assert params[1].detach().eq(0).all()  # no grad, no step


def test_state_dict_round_trip_continues_identically():
    params = _params()
    opt = Lamb(params, lr=0.01)
    for s in range(2):
        for p, g in zip(params, _grads(s)):
            p.grad = g
        opt.step()
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = Lamb(twin, lr=0.5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert opt2.param_groups[0]["lr"] == 0.01
    for o, ps in ((opt, params), (opt2, twin)):
        for p, g in zip(ps, _grads(2)):
            p.grad = g.clone()
        o.step()
    for a, b in zip(params, twin):
        torch.testing.assert_close(a, b)


def test_lamb_inside_lookahead():
    """Lookahead's slow weights pull back LAMB's fast steps: after k steps, w = slow + alpha * (fast - slow)."""
    params = _params()
    fast_only = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = Lookahead(Lamb(params, lr=0.01), k=2, alpha=0.5)
    ref = Lamb(fast_only, lr=0.01)
    start = [p.detach().clone() for p in params]
    for s in range(2):
        for o, ps in ((opt, params), (ref, fast_only)):
            for p, g in zip(ps, _grads(s)):
                p.grad = g.clone()
            o.step()
    for p, f, w0 in zip(params, fast_only, start):
        torch.testing.assert_close(p.detach(), w0 + 0.5 * (f.detach() - w0))
    state = opt.state_dict()
    assert "lookahead" in state and state["state"][0]["trust_ratio"].numel() == 1
    opt.param_groups[0]["lr"] = 0.02  # the KL-adaptive lr writes through Lookahead into LAMB's groups
    assert opt.optimizer.param_groups[0]["lr"] == 0.02


def test_config_selects_lamb_and_lars_and_refuses_others():
    net = torch.nn.Linear(3, 2)
    cfg = Config().with_overrides(["optimizer=lamb", "lookahead=true", "lr=1e-3"])
    opt = build_optimizer(net.parameters(), cfg.optim)
    assert isinstance(opt, Lookahead) and isinstance(opt.optimizer, Lamb)
    assert opt.param_groups[0]["eps"] == cfg.optim.adam_eps
    assert isinstance(build_optimizer(net.parameters(), Config().with_overrides(["optimizer=lars"]).optim), Lars)
    with pytest.raises(ConfigError, match="must be one of.*lamb"):
        Config().with_overrides(["optimizer=lambda"])
    with pytest.raises(ValueError, match="Lamb needs"):
        Lamb(net.parameters(), lr=-1.0)


def test_trainer_trains_with_lamb():
    from aeon_trl.trainer import Trainer
    cfg = Config().with_overrides(["env_id=Pendulum-v1", "env_backend=gymnasium", "num_envs=2", "steps_per_env=16",
                                   "batch_size=16", "epochs=2", "optimizer=lamb", "lookahead=true",
                                   "total_timesteps=32", "eval_episodes=0", "progress=false"])
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    try:
        trainer.train()
    finally:
        trainer.close()
    assert any(not torch.equal(before[k], v) for k, v in trainer.net.state_dict().items())
    ratios = [s["trust_ratio"].item() for s in trainer.optimizer.optimizer.state.values() if "trust_ratio" in s]
    assert ratios and all(r > 0 for r in ratios)
