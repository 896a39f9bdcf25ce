"""compute_gae and TorchRL's GAE module against a plain Python loop."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.objectives.value import GAE

from aeon_trl.objectives.gae import compute_gae

GAMMA, LAM = 0.9, 0.8


def loop_gae(rewards, values, next_values, dones, terminated, gamma=GAMMA, lam=LAM):
    """Reference for one env: Python floats, one step at a time.

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    """
    T = len(rewards)
    adv = [0.0] * T
    running = 0.0
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        running = delta + gamma * lam * (1.0 - dones[t]) * running
        adv[t] = running
    return adv, [a + v for a, v in zip(adv, values)]


def _floats(x):
    return [float(v) for v in x]


def test_single_env_with_episode_boundary():
    g = torch.Generator().manual_seed(0)
    T = 7
    rewards, values = torch.randn(T, generator=g), torch.randn(T, generator=g)
    dones = torch.zeros(T, dtype=torch.bool)
    dones[2] = True  # episode ends mid-sequence, the next one starts at t=3
    next_value = torch.tensor(0.7)

    adv, ret = compute_gae(rewards, values, dones, next_value, gamma=GAMMA, lam=LAM)

    next_values = _floats(values[1:]) + [0.7]
    ref_adv, ref_ret = loop_gae(_floats(rewards), _floats(values), next_values, _floats(dones), _floats(dones))
    torch.testing.assert_close(adv, torch.tensor(ref_adv))
    torch.testing.assert_close(ret, torch.tensor(ref_ret))
    # at the boundary there is no bootstrap and no propagation: A_2 = r_2 - V_2
    assert float(adv[2]) == pytest.approx(float(rewards[2] - values[2]), abs=1e-6)


def test_batched_envs_time_first_and_numpy_in_numpy_out():
    rng = np.random.default_rng(1)
    T, N = 6, 3
    rewards, values = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    dones = np.zeros((T, N))
    dones[1, 0] = 1.0
    dones[4, 2] = 1.0
    dones[5, 1] = 1.0  # ends on the last step: next_value must be ignored there
    next_value = rng.normal(size=N)

    adv, ret = compute_gae(rewards, values, dones, next_value, gamma=GAMMA, lam=LAM)
    assert isinstance(adv, np.ndarray) and adv.shape == (T, N) and adv.dtype == np.float64

    for n in range(N):
        next_values = list(values[1:, n]) + [next_value[n]]
        ref_adv, ref_ret = loop_gae(list(rewards[:, n]), list(values[:, n]), next_values, dones[:, n], dones[:, n])
        # float64 in, but TorchRL forms gamma * not_done in float32: agreement to ~1e-7, not to 1e-15
        np.testing.assert_allclose(adv[:, n], ref_adv, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ret[:, n], ref_ret, rtol=1e-6, atol=1e-6)


def test_truncation_bootstraps_from_final_observation_value():
    g = torch.Generator().manual_seed(2)
    T, N = 6, 2
    rewards, values = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g)
    # V(s_{t+1}) of the observation step t really reached; differs from values[t+1] after a reset
    next_values = torch.cat([values[1:], torch.randn(1, N, generator=g)])
    final_obs_value = 5.0
    next_values[2, 0] = final_obs_value  # env 0 is truncated at t=2: the final (not reset) observation's value
    dones = torch.zeros(T, N, dtype=torch.bool)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    dones[2, 0] = True  # truncation: done but not terminated
    dones[3, 1] = terminated[3, 1] = True  # termination

    adv, ret = compute_gae(rewards, values, dones, gamma=GAMMA, lam=LAM, terminated=terminated, next_values=next_values)

    for n in range(N):
        ref_adv, ref_ret = loop_gae(
            _floats(rewards[:, n]), _floats(values[:, n]), _floats(next_values[:, n]),
            _floats(dones[:, n]), _floats(terminated[:, n]),
        )
        torch.testing.assert_close(adv[:, n], torch.tensor(ref_adv))
        torch.testing.assert_close(ret[:, n], torch.tensor(ref_ret))
    # truncated step: bootstraps on V(final obs) but does not propagate the next episode's advantage
    assert float(adv[2, 0]) == pytest.approx(float(rewards[2, 0] + GAMMA * final_obs_value - values[2, 0]), abs=1e-5)
    # terminated step: no bootstrap at all
    assert float(adv[3, 1]) == pytest.approx(float(rewards[3, 1] - values[3, 1]), abs=1e-6)
    # treating the same truncation as a termination (the seed's dones-only call) gives a different answer
    adv_as_terminal, _ = compute_gae(rewards, values, dones, gamma=GAMMA, lam=LAM, next_values=next_values)
    assert float(adv_as_terminal[2, 0]) == pytest.approx(float(rewards[2, 0] - values[2, 0]), abs=1e-6)


def test_truncation_without_next_values_is_rejected():
    T = 4
    dones = torch.tensor([False, True, False, False])
    terminated = torch.zeros(T, dtype=torch.bool)
    with pytest.raises(ValueError, match="next_values"):
        compute_gae(torch.zeros(T), torch.zeros(T), dones, torch.tensor(0.0), terminated=terminated)
    with pytest.raises(ValueError, match="exactly one"):
        compute_gae(torch.zeros(T), torch.zeros(T), dones)
    # truncation on the last step bootstraps from next_value
    adv, _ = compute_gae(
        torch.zeros(T), torch.zeros(T), torch.tensor([False, False, False, True]), torch.tensor(2.0),
        gamma=GAMMA, lam=LAM, terminated=terminated,
    )
    assert float(adv[-1]) == pytest.approx(GAMMA * 2.0)


def test_torchrl_gae_module_on_collector_layout_matches_loop():
    """The pipeline's path: GAE with a value TensorDictModule on a [N, T] TensorDict, truncation included."""
    torch.manual_seed(3)
    N, T, obs_dim = 3, 5, 4
    net = nn.Linear(obs_dim, 1)
    value_module = TensorDictModule(net, in_keys=["observation"], out_keys=["state_value"])
    obs = torch.randn(N, T, obs_dim)
    next_obs = torch.cat([obs[:, 1:], torch.randn(N, 1, obs_dim)], dim=1)
    done = torch.zeros(N, T, 1, dtype=torch.bool)
    terminated = torch.zeros(N, T, 1, dtype=torch.bool)
    done[0, 1] = True  # env 0 truncated at t=1: ("next", "observation") is the final obs, obs[0, 2] a reset
    next_obs[0, 1] = torch.randn(obs_dim)
    done[1, 3] = terminated[1, 3] = True  # env 1 terminated at t=3
    reward = torch.randn(N, T, 1)
    td = TensorDict(
        {
            "observation": obs,
            "next": {"observation": next_obs, "reward": reward, "done": done, "terminated": terminated},
        },
        batch_size=[N, T],
    )
    GAE(gamma=GAMMA, lmbda=LAM, value_network=value_module, average_gae=False)(td)

    with torch.no_grad():
        values, next_values = net(obs).squeeze(-1), net(next_obs).squeeze(-1)
    for n in range(N):
        ref_adv, ref_ret = loop_gae(
            _floats(reward[n, :, 0]), _floats(values[n]), _floats(next_values[n]),
            _floats(done[n, :, 0]), _floats(terminated[n, :, 0]),
        )
        torch.testing.assert_close(td["advantage"][n, :, 0], torch.tensor(ref_adv))
        torch.testing.assert_close(td["value_target"][n, :, 0], torch.tensor(ref_ret))
    # compute_gae on the time-first transpose agrees with the module
    adv, _ = compute_gae(
        reward[..., 0].T, values.T, done[..., 0].T, gamma=GAMMA, lam=LAM,
        terminated=terminated[..., 0].T, next_values=next_values.T,
    )
    torch.testing.assert_close(adv, td["advantage"][..., 0].T)
