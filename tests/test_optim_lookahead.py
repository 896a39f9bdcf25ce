"""Lookahead against a hand computation and a naive reference (inner optimizer + manual slow-weight pulls)."""

import io
import warnings

import pytest
import torch
from torch import nn

from aeon_trl.optim.lookahead import Lookahead


def _quadratic_step(opt, w):
    """loss = 0.5 * ||w||^2, so grad = w and one SGD step multiplies w by (1 - lr)."""
    opt.zero_grad()
    (0.5 * w.pow(2).sum()).backward()
    opt.step()


def test_k_steps_match_hand_computation():
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=5, alpha=0.5)
    for _ in range(4):
        _quadratic_step(opt, w)
    # No pull before the k-th step: plain SGD so far.
    torch.testing.assert_close(w.detach(), 0.9**4 * w0)
    _quadratic_step(opt, w)
    slow1 = w0 + 0.5 * (0.9**5 * w0 - w0)  # slow starts at w0 (phi_0 = theta_0)
    torch.testing.assert_close(w.detach(), slow1)
    for _ in range(5):
        _quadratic_step(opt, w)
    slow2 = slow1 + 0.5 * (0.9**5 * slow1 - slow1)  # fast restarted from slow1
    torch.testing.assert_close(w.detach(), slow2)


def _make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _batch(step):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)


def _train_step(model, opt, step):
    x, y = _batch(step)
    opt.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()


INNER = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.01),
}


@pytest.mark.parametrize("inner", sorted(INNER))
def test_matches_naive_reference(inner):
    k, alpha, steps = 3, 0.6, 10
    model, ref = _make_model(), _make_model()
    opt = Lookahead(INNER[inner](model.parameters()), k=k, alpha=alpha)
    ref_opt = INNER[inner](ref.parameters())
    slow = [p.detach().clone() for p in ref.parameters()]
    for step in range(steps):
        _train_step(model, opt, step)
        _train_step(ref, ref_opt, step)
        if (step + 1) % k == 0:
            with torch.no_grad():
                for s, p in zip(slow, ref.parameters()):
                    s += alpha * (p - s)
                    p.copy_(s)
    for p, r in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-6)
    # and Lookahead really changed something relative to the bare inner optimizer
    bare = _make_model()
    bare_opt = INNER[inner](bare.parameters())
    for step in range(steps):
        _train_step(bare, bare_opt, step)
    assert not torch.allclose(next(bare.parameters()), next(model.parameters()))


@pytest.mark.parametrize("inner", sorted(INNER))
def test_state_dict_round_trip_is_bit_identical(inner):
    k, total, cut = 5, 13, 7  # cut mid-cycle: slow weights differ from fast and the counter matters
    model = _make_model()
    opt = Lookahead(INNER[inner](model.parameters()), k=k)
    for step in range(total):
        _train_step(model, opt, step)

    first = _make_model()
    first_opt = Lookahead(INNER[inner](first.parameters()), k=k)
    for step in range(cut):
        _train_step(first, first_opt, step)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # slow weights must be weights_only-safe
    assert set(ckpt["opt"]["lookahead"]["slow_params"]) == set(range(len(list(first.parameters()))))

    resumed = _make_model(seed=1)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(ckpt["model"])
    resumed_opt = Lookahead(INNER[inner](resumed.parameters()), k=2, alpha=0.9)  # saved k/alpha win
    resumed_opt.load_state_dict(ckpt["opt"])
    for step in range(cut, total):
        _train_step(resumed, resumed_opt, step)
    for p, r in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, r)


def test_param_groups_alias_inner_and_lr_schedulers_drive_inner_lr():
    w = nn.Parameter(torch.ones(2))
    inner = torch.optim.AdamW([w], lr=1.0)
    opt = Lookahead(inner, k=2)
    assert opt.param_groups is inner.param_groups
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.25, total_iters=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        for _ in range(3):
            _quadratic_step(opt, w)
            sched.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.25)

    # load_state_dict replaces the inner list; the alias and LambdaLR must follow it
    opt.load_state_dict(opt.state_dict())
    assert opt.param_groups is inner.param_groups
    lam = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    _quadratic_step(opt, w)
    lam.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.5 * inner.param_groups[0]["initial_lr"])


def test_validation():
    w = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError):
        Lookahead(torch.optim.SGD([w], lr=0.1), k=0)
    with pytest.raises(ValueError):
        Lookahead(torch.optim.SGD([w], lr=0.1), alpha=1.5)
    with pytest.raises(TypeError):
        Lookahead([w])
