"""Trainer: non-finite rewards/observations/losses stop training cleanly, checkpoints resume the full
state, evaluation returns finite per-episode returns."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchrl.envs import GymWrapper, VecNormV2

from aeon_trl.checkpoint import load_checkpoint
from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import make_env
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.trainer import NonFiniteError, Trainer, episode_steps
from aeon_trl.transforms.reward import ReturnScaling


class _PoisonAfter(gym.Wrapper):
    """Pendulum whose reward (or observation) becomes ``value`` from env step ``k`` on."""

    def __init__(self, env, k, value, where="reward"):
        super().__init__(env)
        self.k, self.value, self.where, self.t = k, value, where, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.t > self.k:
            if self.where == "reward":
                reward = self.value
            else:
                obs = np.full_like(obs, self.value)
        return obs, reward, terminated, truncated, info


SINGLE = {"steps_per_env": 32, "batch_size": 32, "epochs": 1, "total_timesteps": 128, "eval_episodes": 0,
          "progress": False}


# A NaN observation makes the policy's next action (hence the next reward) NaN too, so it is put on the
# batch's last step (step 64) to check that observations are checked on their own.
@pytest.mark.parametrize("where, k", [("reward", 40), ("observation", 63)])
def test_nan_from_the_env_raises_non_finite_error(where, k):
    agent = AdvancedPPO(_PoisonAfter(gym.make("Pendulum-v1"), k=k, value=float("nan"), where=where), SINGLE)
    try:
        with pytest.raises(NonFiniteError, match=rf"NaN/inf in \('next', '{where}'\).*last checkpoint is unchanged"):
            agent.train()
        assert agent.trainer.frames == 32  # the first (clean) batch was trained on, the second was refused
    finally:
        agent.close()


def _flat_params(trainer):
    return {k: v.detach().clone() for k, v in trainer.net.state_dict().items()}


def test_non_finite_loss_stops_before_the_optimizer_step(tmp_path):
    # Rewards of 1e38 are finite in float32, so they pass the env check; GAE sums them into inf
    # advantages/value targets, so the loss is non-finite. The second batch (steps 64..127) holds them,
    # and with one minibatch per epoch that minibatch is the first update of that iteration.
    cfg = Config.from_dict({"env_id": "Pendulum-v1", "num_envs": 1, "steps_per_env": 64, "batch_size": 64,
                            "epochs": 2, "total_timesteps": 256, "norm_reward": False, "progress": False})
    env = make_env(cfg, base_env=GymWrapper(_PoisonAfter(gym.make("Pendulum-v1"), k=64, value=1e38)))
    trainer = Trainer(cfg, env=env)
    path = tmp_path / "checkpoint.pt"
    saved = {}

    def checkpoint(tr, metrics):
        tr.save(path)
        saved["params"] = _flat_params(tr)
        saved["adam_steps"] = [s["step"].clone() for s in tr.optimizer.state_dict()["state"].values()]

    try:
        with pytest.raises(NonFiniteError, match=r"PPO loss became (nan|inf) at iteration 1 .*before the optimizer"):
            trainer.train(on_iteration=checkpoint)
        assert trainer.iteration == 1 and trainer.frames == 64
        params = _flat_params(trainer)
        assert all(torch.equal(params[k], saved["params"][k]) for k in params)  # no step on the bad loss
        assert all(torch.isfinite(v).all() for v in params.values())
        steps = [s["step"] for s in trainer.optimizer.state_dict()["state"].values()]
        assert all(torch.equal(a, b) for a, b in zip(steps, saved["adam_steps"]))
    finally:
        trainer.close()
    # The last checkpoint, written before the failure, is intact and loads into a fresh trainer.
    state = load_checkpoint(path)
    assert state["counters"] == {"frames": 64, "iteration": 1}
    fresh = Trainer(cfg, env=make_env(cfg, base_env=GymWrapper(gym.make("Pendulum-v1"))))
    try:
        fresh.load(path)
        assert all(torch.equal(v, saved["params"][k]) for k, v in fresh.net.state_dict().items())
    finally:
        fresh.close()


TINY = {"env_id": "InvertedPendulum-v5", "env_backend": "envpool", "num_envs": 4, "steps_per_env": 32,
        "batch_size": 64, "epochs": 2, "total_timesteps": 256, "progress": False, "seed": 3, "eval_every": 0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    trainer = Trainer(Config.from_dict(TINY))
    trainer.train()
    path = trainer.save(tmp_path_factory.mktemp("ck") / "checkpoint.pt")
    yield trainer, path
    trainer.close()


def _norm_stats(trainer):
    vecnorm = next(t for t in trainer.env.transform if isinstance(t, VecNormV2))
    scaling = next(t for t in trainer.env.transform if isinstance(t, ReturnScaling))
    return {"loc": vecnorm.loc["observation"], "scale": vecnorm.scale["observation"],
            "count": vecnorm._count["observation"], **{k: v for k, v in scaling.state_dict().items()}}


def _assert_nested_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_nested_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_nested_equal(x, y)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_checkpoint_restores_the_whole_training_state(trained):
    source, path = trained
    assert source.frames == 256 and source.iteration == 2 and len(source.history) == 2
    target = Trainer(Config.from_dict(TINY))
    try:
        before = _flat_params(target)
        target.load(path)
        assert any(not torch.equal(before[k], v) for k, v in _flat_params(target).items())  # load changed them
        _assert_nested_equal(target.net.state_dict(), source.net.state_dict())
        opt_t, opt_s = target.optimizer.state_dict(), source.optimizer.state_dict()
        _assert_nested_equal(opt_t["state"], opt_s["state"])
        assert [g["lr"] for g in opt_t["param_groups"]] == [g["lr"] for g in opt_s["param_groups"]]
        assert opt_s["state"] and all(s["step"].item() > 0 for s in opt_s["state"].values())
        assert (target.frames, target.iteration) == (source.frames, source.iteration)
        assert target.episode_returns == source.episode_returns
        _assert_nested_equal(target.history, source.history)
        stats_t, stats_s = _norm_stats(target), _norm_stats(source)
        assert stats_s["count"].item() > 0 and stats_s["count"].item() == stats_t["count"].item()
        _assert_nested_equal(stats_t, stats_s)
        _assert_nested_equal(target.lr_schedule.state_dict(), source.lr_schedule.state_dict())
        assert target.loss.clip_epsilon.item() == source.loss.clip_epsilon.item()
    finally:
        target.close()


def test_state_dict_survives_a_save_load_save_cycle(trained, tmp_path):
    source, path = trained
    target = Trainer(Config.from_dict(TINY))
    try:
        target.load(path)
        again = load_checkpoint(target.save(tmp_path / "again.pt"))
    finally:
        target.close()
    original = load_checkpoint(path)
    for key in ("config", "dims", "net", "optimizer", "normalization", "counters", "episode_returns", "history"):
        _assert_nested_equal(again[key], original[key])


def test_evaluate_returns_n_finite_returns_without_touching_training_stats(trained):
    trainer, _ = trained
    stats = {k: v.clone() for k, v in _norm_stats(trainer).items()}
    returns = trainer.evaluate(3)
    assert len(returns) == 3 and all(math.isfinite(r) for r in returns)
    # InvertedPendulum pays +1 per step and stops within 1000 steps.
    assert all(1 <= r <= 1000 and float(r).is_integer() for r in returns)
    _assert_nested_equal(_norm_stats(trainer), stats)  # evaluation used a frozen copy
    assert trainer.evaluate(0) == []


def test_close_survives_env_workers_killed_first():
    # On a requeue SLURM kills every process of the job; the main process is still leaving through
    # checkpoint -> sys.exit, and closing its vector env must not turn that exit into an error.
    import os
    import signal as sig
    cfg = Config.from_dict({**TINY, "env_id": "Pendulum-v1", "env_backend": "gymnasium", "num_envs": 2})
    trainer = Trainer(cfg)
    trainer.train(64)
    workers = trainer.env.base_env._env.processes  # gymnasium AsyncVectorEnv's worker processes
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    for w in workers:
        os.kill(w.pid, sig.SIGKILL)
        w.join(timeout=10)
    with pytest.warns(RuntimeWarning, match="already gone when closing"):
        trainer.close()


def test_eval_every_logs_evaluations_without_changing_training(trained):
    # The periodic evaluation plays its own env with a frozen copy of the statistics and a forked RNG: the
    # run with it must train exactly as the run without it (same losses, same weights), plus eval_return rows.
    source, _ = trained
    trainer = Trainer(Config.from_dict({**TINY, "eval_every": 1, "eval_episodes": 2}))
    try:
        trainer.train()
        assert [h["iteration"] for h in trainer.history if "eval_return" in h] == [1, 2]
        assert all(1 <= h["eval_return"] <= 1000 for h in trainer.history)
        for h, h0 in zip(trainer.history, source.history):
            assert h["loss_objective"] == h0["loss_objective"] and h["kl_approx"] == h0["kl_approx"]
        _assert_nested_equal(trainer.net.state_dict(), source.net.state_dict())
    finally:
        trainer.close()


def test_periodic_evaluations_by_default_give_at_least_20_points():
    trainer = Trainer(Config.from_dict({**TINY, "eval_every": -1, "total_timesteps": 128 * 45}))  # 45 iterations
    try:
        assert Config().train.eval_every == -1 and trainer.eval_every == 2
        trainer.train()
        rows = [h for h in trainer.history if "eval_return" in h]
        assert [h["iteration"] for h in rows] == list(range(2, 46, 2)) and len(rows) >= 20
        assert all(1 <= h["eval_return"] <= 1000 for h in rows)  # InvertedPendulum: 1 per step the pole is up
    finally:
        trainer.close()


def test_eval_episodes_0_means_no_evaluation_at_all():
    trainer = Trainer(Config.from_dict({**TINY, "eval_every": -1, "eval_episodes": 0}))
    try:
        assert trainer.eval_every == 0
        trainer.train()
        assert not any("eval_return" in h for h in trainer.history)
    finally:
        trainer.close()


def test_periodic_evaluations_of_a_trainer_with_its_own_eval_env_play_it(monkeypatch):
    """A user's eval env (or a curriculum's reward) lives in the TorchRL stack: Trainer.evaluate plays it."""
    trainer = Trainer(Config.from_dict({**TINY, "eval_every": 1}), eval_env_fn=lambda n, seed: None)
    try:
        monkeypatch.setattr(trainer, "evaluate", lambda n: [7.0] * n)
        assert trainer.periodic_evaluate() == [7.0] * trainer.cfg.train.eval_every_episodes
    finally:
        trainer.close()


def test_episode_steps_match_a_per_step_count():
    rng = np.random.default_rng(0)
    done = torch.as_tensor(rng.random((5, 40)) < 0.1)
    running = torch.tensor([0, 3, 17, 1, 0])
    lengths, after = episode_steps(done, running)
    expected, count = [], running.tolist()
    for env in range(5):
        for t in range(40):
            count[env] += 1
            if done[env, t]:
                expected.append(count[env])
                count[env] = 0
    assert lengths.tolist() == expected and after.tolist() == count


def test_train_return_is_the_reward_rate_times_the_episode_length(trained):
    """Every iteration has a train_return; the finished episodes' lengths are those of their returns
    (InvertedPendulum-v5 pays 1 per step the pole stays up, 0 on the step it falls)."""
    trainer, _ = trained
    assert all(np.isfinite(h["train_return"]) for h in trainer.history)
    assert len(trainer.episode_lengths) == len(trainer.episode_returns) > 0
    assert all(r in (n, n - 1) for r, n in zip(trainer.episode_returns, trainer.episode_lengths))
    # rate <= 1 per step, so the estimate is at most the mean length of the last 20 finished episodes
    assert 0 < trainer.history[-1]["train_return"] <= np.mean(trainer.episode_lengths[-20:])


def test_eval_every_is_auto_or_not_negative():
    assert Config().train.eval_every == -1  # auto: at least 20 evaluations per run
    with pytest.raises(ConfigError, match="eval_every=-2 is out of range"):
        Config.from_dict({"eval_every": -2})
    with pytest.raises(ConfigError, match="eval_every_episodes=0 is out of range"):
        Config.from_dict({"eval_every_episodes": 0})


def test_critic_warmup_moves_only_the_critic_and_keeps_the_lr():
    # During the warm-up iterations the policy (a pre-trained one, in practice) must not move, the critic must,
    # and the KL-driven lr must not grow from the warm-up's zero KL.
    trainer = Trainer(Config.from_dict({**TINY, "critic_warmup": 2, "eval_episodes": 0}))
    try:
        policy = {k: v.clone() for k, v in trainer.net.policy.state_dict().items()}
        value = {k: v.clone() for k, v in trainer.net.value.state_dict().items()}
        lr = trainer.optimizer.param_groups[0]["lr"]
        trainer.train()
        _assert_nested_equal(trainer.net.policy.state_dict(), policy)
        assert any(not torch.equal(v, value[k]) for k, v in trainer.net.value.state_dict().items())
        assert all(h["epochs_run"] == 2 and math.isnan(h["kl_approx"]) for h in trainer.history)
        assert all(h["lr"] <= lr for h in trainer.history)  # only the linear annealing moved it
        trainer.train(512)  # past the warm-up: PPO moves the policy
        assert any(not torch.equal(v, policy[k]) for k, v in trainer.net.policy.state_dict().items())
    finally:
        trainer.close()


# ---- plugins: the trainer composes them, its checkpoint is composed of theirs ------------------------------
PLAIN = {"env_id": "Pendulum-v1", "env_backend": "serial", "num_envs": 2, "steps_per_env": 16,
         "minibatch_size": 16, "epochs": 1, "total_timesteps": 64, "eval_episodes": 0, "progress": False}
FEATURES = {**PLAIN, "curiosity": True, "prioritized": True, "priority_key": "td_error", "dynamic_batch": True,
            "dynamic_batch_cap": 64}


def test_a_trainer_without_features_has_no_plugins():
    import inspect
    import re

    import aeon_trl.trainer
    # the loop reads no feature's switch: build_plugins is the one place that does
    assert not re.search(r"cfg\.(curiosity|demo|replay|shaping)\b", inspect.getsource(aeon_trl.trainer))
    trainer = Trainer(Config.from_dict(PLAIN))
    try:
        assert trainer.plugins == [] and trainer.plugin("curiosity") is None
        trainer.train()
        assert trainer.state_dict()["plugins"] == {}
        assert type(trainer.buffer.sampler).__name__ == "SamplerWithoutReplacement"
    finally:
        trainer.close()


def _legacy(state):
    """``state`` as checkpoints were written before the plugins had their own entry."""
    old = {k: v for k, v in state.items() if k != "plugins"}
    plugins = state["plugins"]
    old["curiosity"] = plugins.get("curiosity", {})
    dyn = plugins.get("dynamic_batch", {})
    old["shaping"] = {"frames_per_batch": dyn.get("frames_per_batch", 32), "batch_sizer": dyn.get("batch_sizer", {}),
                      "curriculum": plugins.get("curriculum", {})}
    return old


@pytest.mark.parametrize("legacy", [False, True])
def test_plugin_checkpoint_round_trips(tmp_path, legacy):
    cfg = Config.from_dict(FEATURES)
    trainer = Trainer(cfg)
    try:
        assert [p.name for p in trainer.plugins] == ["curiosity", "dynamic_batch", "prioritized"]
        trainer.train()
        state = trainer.state_dict()
    finally:
        trainer.close()
    assert set(state["plugins"]) == {"curiosity", "dynamic_batch", "prioritized"}
    assert "curiosity" not in state and "shaping" not in state
    other = Trainer(cfg)
    try:
        other.load_state_dict(_legacy(state) if legacy else state)
        again = other.state_dict()["plugins"]
        assert again["dynamic_batch"] == state["plugins"]["dynamic_batch"]
        assert other.frames_per_batch == state["plugins"]["dynamic_batch"]["frames_per_batch"]
        for k, v in state["plugins"]["curiosity"]["transform"].items():
            torch.testing.assert_close(again["curiosity"]["transform"][k], v)
        saved_moments = state["plugins"]["curiosity"]["optimizer"]["state"]
        assert again["curiosity"]["optimizer"]["state"].keys() == saved_moments.keys() and len(saved_moments) > 0
    finally:
        other.close()


# ---- apply_hparams: a new config's hyperparameters in the places the trainer holds them ---------------------
def test_apply_hparams_writes_the_new_values_and_refuses_built_keys():
    cfg = Config.from_dict({**PLAIN, "lr": 1e-3, "kl_coef": 0.5, "adaptive_lr": False})
    trainer = Trainer(cfg)
    try:
        trainer.train()
        trainer.lr_schedule.multiplier = 2.0  # as if the KL rule had adapted it
        kl_before = trainer.loss.kl_coef.item()
        new = Config.from_dict({"lr": 3e-3, "clip_epsilon": 0.3, "gamma": 0.9, "entropy_coef": 0.02, "wd": 1e-4,
                                "kl_target": 0.05}, base=cfg)
        changed = trainer.apply_hparams(new)
        assert changed == ["clip_epsilon", "entropy_coef", "gamma", "kl_target", "lr", "wd"]
        assert trainer.cfg is new
        assert trainer.loss.clip_epsilon.item() == pytest.approx(0.3)
        assert trainer.loss.kl_coef.item() == kl_before  # unchanged: keeps its adapted value
        assert trainer.kl_coef.kl_target == 0.05 and trainer.early_stop.kl_target == 0.05
        assert trainer.advantage.gamma.item() == pytest.approx(0.9)
        assert trainer.entropy.value() == pytest.approx(0.02)
        group = trainer.optimizer.param_groups[0]
        assert group["weight_decay"] == 1e-4
        assert group["lr"] == pytest.approx(3e-3 * 2.0 * trainer.lr_schedule.anneal_factor)
        assert trainer.apply_hparams(new) == []  # nothing left to write
        for built in ({"steps_per_env": 32}, {"hidden_sizes": [8]}, {"curiosity": True}, {"kl_coef": 0.0}):
            with pytest.raises(ConfigError, match="build a new Trainer"):
                trainer.apply_hparams(Config.from_dict(built, base=new))
    finally:
        trainer.close()


def test_the_losss_plain_tensor_path_trains_bit_for_bit_as_torchrls_path():
    """The loss's plain-tensor path is a faster route to the same numbers: a short run with it and one with
    ClipPPOLoss's own forward end with identical parameters (critic ensemble, gate, entropy bonus and KL term on)."""
    cfg = Config.from_dict({**TINY, "epochs": 3, "total_timesteps": 512, "num_critics": 3, "gating": True,
                            "entropy_coef": 0.01, "kl_coef": 0.2})
    params = []
    for tensor_path in (True, False):
        trainer = Trainer(cfg)
        try:
            assert trainer.loss.networks is not None
            if not tensor_path:
                trainer.loss.networks = None
            trainer.train()
            params.append([p.detach().clone() for p in trainer.net.parameters()])
        finally:
            trainer.close()
    assert all(torch.equal(a, b) for a, b in zip(*params))
    assert not all(torch.equal(a, b) for a, b in zip(params[0], Trainer(cfg).net.parameters())), "it trained"


def _kernels(trainer) -> set:
    return {(g["fused"], g["foreach"]) for g in trainer.optimizer.param_groups}


def test_compile_config_compiles_the_trainers_loss_and_fuses_adam():
    for compile_loss in (True, False):
        trainer = Trainer(Config.from_dict({**TINY, "compile": compile_loss}))
        try:
            assert (trainer.loss._compiled_terms is not None) == compile_loss
            assert _kernels(trainer) == ({(True, None)} if compile_loss else {(None, True)})
        finally:
            trainer.close()


def test_a_resume_keeps_its_own_adam_kernel(trained):
    """torch's load_state_dict would take the checkpoint's foreach/fused flags: an eager checkpoint resumed with
    compile=true must still step fused (and its Adam moments carry over), and back again foreach."""
    source, path = trained
    compiled = Trainer(Config.from_dict({**TINY, "compile": True, "total_timesteps": 512}))
    try:
        compiled.load(path)
        assert _kernels(compiled) == {(True, None)}
        _assert_nested_equal(compiled.optimizer.state_dict()["state"], source.optimizer.state_dict()["state"])
        compiled.train()  # two more iterations: fused steps on the loaded state
        assert compiled.frames == 512
        compiled_path = compiled.save(path.parent / "compiled.pt")
    finally:
        compiled.close()
    eager = Trainer(Config.from_dict(TINY))
    try:
        eager.load(compiled_path)
        assert _kernels(eager) == {(None, True)}
    finally:
        eager.close()


def test_update_threads_apply_to_the_update_only():
    trainer = Trainer(Config.from_dict({**TINY, "torch_threads": 1, "update_threads": 2}))
    seen = []
    step = trainer.optimize_minibatch
    trainer.optimize_minibatch = lambda *a, **k: seen.append(torch.get_num_threads()) or step(*a, **k)
    try:
        trainer.train()
        assert seen and set(seen) == {2}
        assert torch.get_num_threads() == 1  # collection and everything else keep torch_threads
    finally:
        trainer.close()
