"""Issue 14, items 11-12: the seed's own examples, run as written (tiny budgets, Pendulum-v1 for HalfCheetah).

11. The README's demonstrations loop::

        batch = demo_buffer.sample(batch_size=512, agent_buffer=ppo.buffer, demo_ratio=0.3)
        ppo.update_from_batch(batch)

12. The AutoTuner example::

        AutoTuner(env_factory=lambda: gym.make('HalfCheetah-v4'),
                  config={'parameters': {'clip_range': (0.1, 0.3), ...}, 'metric': '100_episode_return', ...})

Written against the code before the fixes: each test fails until its part is implemented. The facade and tuner
are imported in one place (below), so a move of either (issue 13) is a one-line change.
"""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from aeon_trl import AdvancedPPO, AutoTuner  # the seed's public names
from aeon_trl.checkpoint import load_checkpoint
from aeon_trl.config import Config
from aeon_trl.data.demonstrations import IS_DEMO, DemonstrationBuffer
from aeon_trl.tuning import TuningConfig

# 4 envs x 256 steps = 1,024 frames per batch: 512-row minibatches take 358 agent rows each.
TINY = {"env_backend": "serial", "num_envs": 4, "steps_per_env": 256, "batch_size": 64, "epochs": 1,
        "progress": False, "eval_episodes": 0, "seed": 1}
FRAMES = 4 * 256


@pytest.fixture(scope="module")
def ppo():
    agent = AdvancedPPO("Pendulum-v1", TINY)
    agent.train(total_timesteps=FRAMES)
    yield agent
    agent.close()


def agent_buffer(agent):
    """The agent's on-policy buffer: ``ppo.buffer`` as the seed writes it, else today's ``ppo.trainer.buffer``,
    so that each test below fails for its own defect and not all of them for the missing attribute."""
    return agent.buffer if hasattr(agent, "buffer") else agent.trainer.buffer


def pendulum_demos(agent, n: int = 600, seed: int = 0) -> DemonstrationBuffer:
    """``n`` transitions of a real Pendulum-v1 played with random actions (raw observations, executed actions)."""
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    rows = {k: [] for k in ("obs", "act", "next", "rew", "done", "term")}
    for _ in range(n):
        act = env.action_space.sample()
        nxt, rew, term, trunc, _ = env.step(act)
        for k, v in zip(rows, (obs, act, nxt, [rew], [term or trunc], [term])):
            rows[k].append(np.asarray(v))
        obs = env.reset()[0] if term or trunc else nxt
    env.close()
    t = {k: torch.as_tensor(np.stack(v)) for k, v in rows.items()}
    td = TensorDict({"observation": t["obs"].float(), "action": t["act"].float(),
                     "next": {"observation": t["next"].float(), "reward": t["rew"].float(),
                              "done": t["done"].bool(), "terminated": t["term"].bool()}}, batch_size=[n])
    demos = DemonstrationBuffer(n, env=agent.trainer.env, env_id="Pendulum-v1")
    demos.add(td)
    return demos


# ---- 11. the demonstrations loop ------------------------------------------------------------------------------
def test_ppo_exposes_its_on_policy_buffer_after_train(ppo):
    assert hasattr(ppo, "buffer"), "AdvancedPPO has no .buffer (the seed's agent_buffer=ppo.buffer)"
    assert len(ppo.buffer) == FRAMES
    row = ppo.buffer.sample(4)
    assert {"advantage", "action_log_prob", "value_target"} <= set(row.keys())


def test_sample_returns_exactly_batch_size_rows(ppo):
    demos = pendulum_demos(ppo)
    sizes = [demos.sample(batch_size=512, agent_buffer=agent_buffer(ppo), demo_ratio=0.3).shape[0] for _ in range(4)]
    assert sizes == [512] * 4


def test_demo_term_is_on_when_the_batch_has_demo_rows(ppo):
    demos = pendulum_demos(ppo)
    batch = demos.sample(batch_size=512, agent_buffer=agent_buffer(ppo), demo_ratio=0.3)
    out = ppo.update_from_batch(batch)
    assert out.get("loss_demo", 0.0) > 0, f"loss_demo is {out.get('loss_demo')} (demo_coef {ppo.trainer.loss.demo_coef})"


def test_demo_actions_move_the_policy(ppo, tmp_path):
    """Two updates from the same state on the same batch, except the demo rows' actions: the parameters differ."""
    start = ppo.save(tmp_path / "start.pt")
    demos = pendulum_demos(ppo)
    torch.manual_seed(0)
    batch = demos.sample(batch_size=512, agent_buffer=agent_buffer(ppo), demo_ratio=0.3)
    other = batch.clone()
    is_demo = other.get(IS_DEMO)
    assert is_demo.any()
    other.set("action", torch.where(is_demo.unsqueeze(-1), -other.get("action"), other.get("action")))

    def params_after(b):
        ppo.load(start)
        torch.manual_seed(1)
        ppo.update_from_batch(b.clone())
        return [p.detach().clone() for p in ppo.trainer.net.parameters()]

    a, b = params_after(batch), params_after(other)
    assert any(not torch.equal(x, y) for x, y in zip(a, b)), "changing every demo action left the update identical"


# ---- 12. the AutoTuner example --------------------------------------------------------------------------------
def test_a_tuple_is_a_range_and_a_list_a_choice():
    tc = TuningConfig.from_dict({"population_size": 2, "mutation_rate": 0.25, "metric": "100_episode_return",
                                 "eval_timesteps": 256,
                                 "parameters": {"clip_range": (0.1, 0.3), "epochs": [2, 4]}}, Config())
    clip = tc.parameters["clip_epsilon"]
    assert (clip.kind, clip.low, clip.high) == ("float", 0.1, 0.3), clip
    assert tc.parameters["epochs"].kind == "choice"


@pytest.mark.slow
def test_the_seed_autotuner_example_runs(tmp_path):
    """The seed's call (keyword env_factory with a zero-argument factory of a gymnasium env, config= with a tuple
    range); only the budget is shrunk (base_config), trials run in this process, and the tune folder is tmp."""
    tuner = AutoTuner(
        env_factory=lambda: gym.make("Pendulum-v1"),
        config={"parameters": {"clip_range": (0.1, 0.3), "lr": (1e-4, 1e-3)}, "metric": "100_episode_return",
                "population_size": 2, "mutation_rate": 0.25, "eval_timesteps": 512},
        base_config={"steps_per_env": 256, "batch_size": 64, "epochs": 1, "progress": False, "eval_episodes": 0},
        tune_dir=tmp_path / "tune", executor="inline", log=None)
    best = tuner.run(generations=2)
    assert 0.1 <= best.ppo.clip_epsilon <= 0.3 and 1e-4 <= best.optim.lr <= 1e-3
    state = json.loads((tmp_path / "tune" / "tuner_state.json").read_text())
    drawn = [m["hparams"]["clip_epsilon"] for m in state["members"]]
    assert not set(drawn) <= {0.1, 0.3}, f"clip_range drawn as a two-value choice: {drawn}"
    # the metric is the mean return of the member's last 100 training episodes
    for m in state["members"]:
        returns = load_checkpoint(tmp_path / "tune" / m["checkpoint"])["episode_returns"].tolist()
        assert returns and m["score"] == pytest.approx(float(np.mean(returns[-100:])))
