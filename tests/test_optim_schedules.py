"""Schedules against hand-computed sequences; state dicts round-trip through torch.load(weights_only=True)."""

import io
import math

import pytest
import torch
from torch import nn

from aeon_trl.optim.lookahead import Lookahead
from aeon_trl.optim.schedules import (
    AdaptiveClipper,
    AdaptiveKLCoef,
    EntropyAnnealing,
    KLAdaptiveLR,
    KLEarlyStop,
    linear_schedule,
)


def _weights_only_round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _assert_plain_numbers(state):
    for value in state.values():
        items = value if isinstance(value, list) else [value]
        assert all(type(v) in (int, float) for v in items), state


def test_adaptive_clipper_sequence():
    clip = AdaptiveClipper(init_value=0.2, kl_target=0.01, rate=1.5, min_value=0.05, max_value=0.5)
    assert clip.update(0.02) == pytest.approx(0.2 / 1.5)  # 0.02 > 1.5 * 0.01: shrink
    assert clip.update(0.01) == pytest.approx(0.2 / 1.5)  # inside the band: unchanged
    assert clip.update(0.014) == pytest.approx(0.2 / 1.5)  # just inside the upper edge
    assert clip.update(torch.tensor(0.001)) == pytest.approx(0.2)  # < 0.01 / 1.5: grow; tensors accepted
    assert clip.update(float("nan")) == pytest.approx(0.2)
    for _ in range(10):
        clip.update(1.0)
    assert clip.value == 0.05
    for _ in range(10):
        clip.update(0.0)
    assert clip.value == 0.5

    clip.update(0.02)
    state = _weights_only_round_trip(clip.state_dict())
    _assert_plain_numbers(state)
    other = AdaptiveClipper()
    other.load_state_dict(state)
    assert other.value == pytest.approx(0.5 / 1.5)
    assert other.update(0.02) == pytest.approx(0.5 / 1.5**2)


def test_adaptive_kl_coef_classic_rule():
    beta = AdaptiveKLCoef(init_value=1.0, kl_target=0.01, min_value=0.1, max_value=4.0)
    assert beta.update(0.016) == 2.0  # > 1.5 * target: double
    assert beta.update(0.012) == 2.0
    assert beta.update(0.006) == 1.0  # < target / 1.5: halve
    assert beta.update(0.0) == 0.5
    for _ in range(10):
        beta.update(1.0)
    assert beta.value == 4.0
    for _ in range(10):
        beta.update(0.0)
    assert beta.value == 0.1

    other = AdaptiveKLCoef()
    other.load_state_dict(_weights_only_round_trip(beta.state_dict()))
    assert other.value == 0.1


def test_adaptive_kl_coef_horizon_rule():
    beta = AdaptiveKLCoef(init_value=1.0, kl_target=0.01, horizon=100)
    # e = clip(0.02 / 0.01 - 1, -0.2, 0.2) = 0.2; beta *= 1 + 0.2 * 10 / 100
    assert beta.update(0.02, n_steps=10) == pytest.approx(1.02)
    # e = 0.011 / 0.01 - 1 = 0.1 (unclipped)
    assert beta.update(0.011, n_steps=10) == pytest.approx(1.02 * 1.01)
    assert beta.update(0.0, n_steps=10) == pytest.approx(1.02 * 1.01 * 0.98)


def _two_group_sgd():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    return torch.optim.SGD([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 5e-4}], lr=1e-3)


def test_kl_adaptive_lr_rule_bounds_and_layerwise_ratio():
    opt = _two_group_sgd()
    sched = KLAdaptiveLR(opt, kl_target=0.008, min_lr=1e-4, max_lr=2e-3)
    assert sched.update(0.02) == pytest.approx(1e-3 / 1.5)  # > 2 * target
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 1.5)
    assert opt.param_groups[1]["lr"] == pytest.approx(5e-4 / 1.5)  # same factor on every group
    assert sched.update(0.01) == pytest.approx(1e-3 / 1.5)  # inside (0.004, 0.016): unchanged
    assert sched.update(0.001) == pytest.approx(1e-3)  # < target / 2
    for _ in range(10):
        sched.update(0.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-3)  # max_lr bounds the largest group
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3)
    for _ in range(20):
        sched.update(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_kl_adaptive_lr_composes_with_linear_annealing():
    opt = _two_group_sgd()
    sched = KLAdaptiveLR(opt, kl_target=0.008, anneal_end=0.0)
    assert sched.anneal(0.5) == pytest.approx(0.5e-3)
    assert sched.update(0.02) == pytest.approx(1e-3 / 1.5 * 0.5)  # multiplier and anneal factor multiply
    assert opt.param_groups[1]["lr"] == pytest.approx(5e-4 / 1.5 * 0.5)
    assert sched.anneal(0.75) == pytest.approx(1e-3 / 1.5 * 0.25)  # annealing keeps the KL multiplier
    assert sched.anneal(1.0) == 0.0  # annealing may go below min_lr

    pure = KLAdaptiveLR(_two_group_sgd(), kl_target=None, anneal_end=0.1)
    assert pure.update(1.0) == pytest.approx(1e-3)  # KL rule disabled
    assert pure.anneal(1.0) == pytest.approx(1e-4)


def test_kl_adaptive_lr_drives_lookahead_inner_optimizer_and_tensor_lr():
    w = nn.Parameter(torch.ones(2))
    inner = torch.optim.Adam([w], lr=torch.tensor(1e-3))
    lr_tensor = inner.param_groups[0]["lr"]
    sched = KLAdaptiveLR(Lookahead(inner), kl_target=0.008)
    sched.update(0.02)
    assert inner.param_groups[0]["lr"] is lr_tensor  # updated in place, not replaced
    assert float(lr_tensor) == pytest.approx(1e-3 / 1.5)


def test_kl_adaptive_lr_state_round_trip_restores_lr():
    opt = _two_group_sgd()
    sched = KLAdaptiveLR(opt, kl_target=0.008, anneal_end=0.0)
    sched.update(0.02)
    sched.anneal(0.5)
    state = _weights_only_round_trip(sched.state_dict())
    _assert_plain_numbers(state)

    # base LRs and factors must come from the state, not from this optimizer's current LRs
    params = [nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))]
    fresh_opt = torch.optim.SGD([{"params": [p], "lr": 0.1} for p in params], lr=0.1)
    restored = KLAdaptiveLR(fresh_opt, kl_target=0.008, anneal_end=0.0)
    restored.load_state_dict(state)
    assert [g["lr"] for g in fresh_opt.param_groups] == pytest.approx([1e-3 / 1.5 * 0.5, 5e-4 / 1.5 * 0.5])


def test_linear_schedule_and_entropy_annealing():
    assert linear_schedule(1.0, 0.0, 0.25) == 0.75
    assert linear_schedule(0.0, 2.0, -1.0) == 0.0  # progress clamped
    assert linear_schedule(0.0, 2.0, 3.0) == 2.0
    ent = EntropyAnnealing(0.01, 0.001)
    assert ent.value(0.0) == pytest.approx(0.01)
    assert ent.value(0.5) == pytest.approx(0.0055)
    assert ent.value() == pytest.approx(0.0055)  # remembers the last progress
    assert ent.value(2.0) == pytest.approx(0.001)
    ent.value(0.5)
    restored = EntropyAnnealing(0.01, 0.001)
    restored.load_state_dict(_weights_only_round_trip(ent.state_dict()))
    assert restored.value() == pytest.approx(0.0055)


def test_kl_early_stop():
    stop = KLEarlyStop(kl_target=0.01, factor=1.5)
    assert not stop.should_stop(0.014)
    assert stop.should_stop(torch.tensor(0.016))
    assert stop.should_stop(math.nan)  # a diverged update must not keep training on the batch
    assert stop.num_stops == 2
    restored = KLEarlyStop(kl_target=0.01)
    restored.load_state_dict(_weights_only_round_trip(stop.state_dict()))
    assert restored.num_stops == 2
    off = KLEarlyStop(kl_target=None)
    assert not off.should_stop(100.0)
    assert not off.should_stop(math.nan)


def test_kl_band_is_the_rule_every_kl_schedule_follows():
    from aeon_trl.optim.schedules import kl_band
    assert [kl_band(kl, 0.01, 1.5) for kl in (0.0151, 0.015, 0.01, 0.01 / 1.5, 0.0066, float("nan"))] == \
        [1, 0, 0, 0, -1, 0]
    for kl in (0.02, 0.01, 0.001):  # each schedule moves the way the band says
        band = kl_band(kl, 0.01, 1.5)
        clip = AdaptiveClipper(init_value=0.2, kl_target=0.01, rate=1.5)
        beta = AdaptiveKLCoef(init_value=1.0, kl_target=0.01, tolerance=1.5)
        assert math.copysign(1, 0.2 - clip.update(kl)) == band or (band == 0 and clip.value == 0.2)
        assert math.copysign(1, beta.update(kl) - 1.0) == band or (band == 0 and beta.value == 1.0)
    assert KLEarlyStop(0.01).should_stop(0.0151) and not KLEarlyStop(0.01).should_stop(0.015)


def test_linear_schedule_class_and_geometric_decay():
    from aeon_trl.optim.schedules import GeometricDecay, LinearSchedule
    s = LinearSchedule(0.4, 1.0)
    assert [s.value(p) for p in (0.0, 0.5, 2.0)] == [linear_schedule(0.4, 1.0, p) for p in (0.0, 0.5, 1.0)]
    assert s.value() == 1.0 and s.state_dict() == {"progress": 1.0}
    assert isinstance(EntropyAnnealing(0.01, 0.0), LinearSchedule)
    assert GeometricDecay(0.1, 0.9).value(3) == 0.1 * 0.9 ** 3
