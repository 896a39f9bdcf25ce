"""Demonstrations: mixing, the behaviour-cloning term, file validation, save/load, record_demos, trainer path."""
import pytest
import torch
from tensordict import TensorDict
from torchrl.data import LazyTensorStorage, ReplayBuffer

from aeon_trl.config import Config, ConfigError
from aeon_trl.data.demonstrations import IS_DEMO, DemonstrationBuffer, DemonstrationError
from aeon_trl.envs import make_env, normalize_observation
from aeon_trl.modules.actor_critic import AdaptiveActorCritic, make_ppo_operators
from aeon_trl.objectives.ppo import AdvancedClipPPOLoss
from aeon_trl.ppo import AdvancedPPO

OBS, ACT = 5, 3


def transitions(n, obs=OBS, act=ACT, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({
        "observation": torch.randn(n, obs, generator=g), "action": torch.rand(n, act, generator=g) * 2 - 1,
        "next": {"observation": torch.randn(n, obs, generator=g), "reward": torch.randn(n, 1, generator=g),
                 "done": torch.zeros(n, 1, dtype=torch.bool), "terminated": torch.zeros(n, 1, dtype=torch.bool)},
    }, batch_size=[n])


def agent_rows(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDict({
        "observation": torch.randn(n, OBS, generator=g), "action": torch.randn(n, ACT, generator=g),
        "action_log_prob": -torch.rand(n, generator=g) * 3, "advantage": torch.randn(n, 1, generator=g),
        "value_target": torch.randn(n, 1, generator=g), "state_value": torch.randn(n, 1, generator=g),
        "state_value_ensemble": torch.randn(n, 1, generator=g),
    }, batch_size=[n])


def agent_buffer(n=200):
    rb = ReplayBuffer(storage=LazyTensorStorage(n))
    rb.extend(agent_rows(n))
    return rb


def env_for(env_id):
    return make_env(Config.from_dict({"env_id": env_id, "env_backend": "serial", "num_envs": 1, "steps_per_env": 64,
                                      "batch_size": 64}))


@pytest.mark.parametrize("batch_size,ratio", [(50, 0.3), (64, 0.25), (7, 0.5)])
def test_mixing_gives_exact_demo_rows(batch_size, ratio):
    demos = DemonstrationBuffer(100)
    demos.add(transitions(100))
    mixed = demos.sample(batch_size, agent_buffer(), demo_ratio=ratio)
    n_demo = round(batch_size * ratio)
    assert mixed.shape == (batch_size,)
    assert mixed[IS_DEMO].sum().item() == n_demo and mixed[IS_DEMO][-n_demo:].all()
    demo_obs = demos.transitions["observation"]
    for row in mixed[mixed[IS_DEMO]]["observation"]:  # demo rows carry the stored raw observations
        assert (demo_obs == row).all(-1).any()
    assert not mixed[~mixed[IS_DEMO]]["advantage"].eq(0).all()  # agent rows keep their data


@pytest.fixture
def loss_setup():
    torch.manual_seed(0)
    net = AdaptiveActorCritic(OBS, ACT, hidden_sizes=[16, 16], log_std_init=-0.5)
    actor, critic = make_ppo_operators(net)
    loss = AdvancedClipPPOLoss(actor, critic, clip_epsilon=0.2, clip_value=0.2, entropy_coeff=0.01, kl_coef=0.2,
                               demo_coef=0.7, normalize_advantage=True, functional=False)
    demos = DemonstrationBuffer(100)
    demos.add(transitions(100))
    return net, loss, demos.sample(40, agent_buffer(), demo_ratio=0.3)


def test_bc_term_is_demo_log_likelihood_and_ppo_ignores_demo_rows(loss_setup):
    net, loss, mixed = loss_setup
    out = loss(mixed)
    demo = mixed[mixed[IS_DEMO]]
    loc, scale = net.policy(demo["observation"])
    nll = -torch.distributions.Normal(loc, scale).log_prob(demo["action"]).sum(-1).mean()
    torch.testing.assert_close(out["loss_demo"], 0.7 * nll)
    torch.testing.assert_close(out["demo_nll"], nll)
    # PPO terms: identical to the loss on the agent rows alone, whatever the demo rows' PPO keys hold
    alone = loss(mixed[~mixed[IS_DEMO]].exclude(IS_DEMO))
    poisoned = mixed.clone()
    poisoned["advantage"][poisoned[IS_DEMO]] = float("nan")
    poisoned["action_log_prob"][poisoned[IS_DEMO]] = 1e6
    out_poisoned = loss(poisoned)
    for key in ("loss_objective", "loss_critic", "loss_entropy", "loss_kl", "kl_approx"):
        torch.testing.assert_close(out[key], alone[key], msg=key)
        torch.testing.assert_close(out_poisoned[key], alone[key], msg=key)
    total = sum(out_poisoned[k] for k in ("loss_objective", "loss_critic", "loss_entropy", "loss_kl", "loss_demo"))
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_save_load_round_trip(tmp_path):
    buffer = DemonstrationBuffer(50, env_id="Custom-v0")
    buffer.add(transitions(30))
    for name in ("demos.pt", "demos_folder"):
        path = buffer.save(tmp_path / name)
        buffer.save(path)  # overwriting an existing file/folder is atomic too
        loaded = DemonstrationBuffer(50).load_demonstrations_from_file(path)
        assert loaded.env_id == "Custom-v0" and len(loaded) == 30
        assert (loaded.transitions == buffer.transitions).all()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_wrong_env_truncated_and_nan_files_refused(tmp_path):
    hopper, cheetah = env_for("Hopper-v5"), env_for("HalfCheetah-v5")
    try:
        obs_dim = hopper.observation_spec["observation"].shape[-1]
        act_dim = hopper.action_spec.shape[-1]
        recorded = DemonstrationBuffer(20, env=hopper, env_id="Hopper-v5")
        recorded.add(transitions(20, obs=obs_dim, act=act_dim))
        path = recorded.save(tmp_path / "hopper.pt")
        with pytest.raises(DemonstrationError, match=r"recorded on Hopper-v5, this run trains HalfCheetah-v5"):
            DemonstrationBuffer(100, env=cheetah, env_id="HalfCheetah-v5").load_demonstrations_from_file(path)
        # without the id, the shapes still give it away
        with pytest.raises(DemonstrationError, match=r"observation is torch.float32 of shape \(11,\).*needs "
                                                     r"torch.float32 of shape \(17,\).*another env"):
            DemonstrationBuffer(100, env=cheetah).load_demonstrations_from_file(path)
    finally:
        hopper.close()
        cheetah.close()
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DemonstrationError, match="cannot be read.*truncated or corrupt"):
        DemonstrationBuffer(100).load_demonstrations_from_file(truncated)
    folder = recorded.save(tmp_path / "folder")
    victim = next((folder / "transitions").rglob("*.memmap"))
    victim.write_bytes(victim.read_bytes()[:8])
    with pytest.raises(DemonstrationError, match="cannot be read.*truncated"):
        DemonstrationBuffer(100).load_demonstrations_from_file(folder)
    payload = torch.load(path, weights_only=True)
    payload["transitions"]["observation"][3, 2] = float("nan")
    nan_file = tmp_path / "nan.pt"
    torch.save(payload, nan_file)
    with pytest.raises(DemonstrationError, match="observation holds NaN/inf in 1 transition"):
        DemonstrationBuffer(100).load_demonstrations_from_file(nan_file)
    payload = torch.load(path, weights_only=True)
    payload["transitions"]["action"] = payload["transitions"]["action"][:10]
    short = tmp_path / "short.pt"
    torch.save(payload, short)
    with pytest.raises(DemonstrationError, match="different numbers of transitions"):
        DemonstrationBuffer(100).load_demonstrations_from_file(short)


def test_config_keys_validated():
    cfg = Config().with_overrides(["demos=x.pt", "demo_ratio=0.25", "demo_coef=0.5", "demo_coef_decay=0.9"])
    assert (cfg.demo.demos, cfg.demo.demo_ratio, cfg.demo.demo_coef_decay) == ("x.pt", 0.25, 0.9)
    with pytest.raises(ConfigError, match="demo_ratio"):
        Config().with_overrides(["demo_ratio=1.2"])
    with pytest.raises(ConfigError, match="demo_coef_decay"):
        Config().with_overrides(["demo_coef_decay=0"])
    with pytest.raises(ConfigError, match="gives 0 demo rows"):
        Config().with_overrides(["demos=x.pt", "batch_size=4", "demo_ratio=0.1"])


def test_record_demos_then_train_with_them(tmp_path):
    """record_demos on a short real run (Pendulum), then the trainer path: demo rows normalized with the current
    statistics before the loss, loss_demo in the history, update_from_batch on a mixed batch."""
    from aeon_trl.cli.record_demos import main as record_main
    cfg = {"env_id": "Pendulum-v1", "env_backend": "gymnasium", "num_envs": 2, "steps_per_env": 32,
           "batch_size": 16, "epochs": 1, "total_timesteps": 64, "eval_episodes": 0, "progress": False}
    agent = AdvancedPPO("Pendulum-v1", cfg)
    agent.train()
    ckpt = agent.save(tmp_path / "checkpoint.pt")
    agent.close()
    out = tmp_path / "pendulum_demos.pt"
    assert record_main([str(ckpt), "--episodes", "2", "--out", str(out)]) == 0
    demos = DemonstrationBuffer(1000).load_demonstrations_from_file(out)
    td = demos.transitions
    assert demos.env_id == "Pendulum-v1" and len(demos) == 400  # 2 whole episodes of 200 steps
    assert td["next", "done"].sum() == 2 and td["next", "done"][[199, 399]].all()
    torch.testing.assert_close(td["observation"][:, :2].pow(2).sum(-1), torch.ones(400))  # raw: cos^2 + sin^2
    assert td["action"].abs().max() <= 2.0  # executed (clipped) actions

    agent = AdvancedPPO("Pendulum-v1", {**cfg, "demos": str(out), "demo_ratio": 0.25, "demo_pretrain_steps": 3})
    trainer = agent.trainer
    seen = []
    forward = trainer.loss.forward
    trainer.loss.forward = lambda td: seen.append(td.clone()) or forward(td)
    try:
        agent.train()
        assert "loss_demo" in trainer.history[-1] and trainer.history[-1]["demo_coef"] > 0
        assert len(seen) == 3 + 2 * 2  # 3 pre-training steps, then 2 iterations of 2 minibatches
        mixed = trainer.plugin("demonstrations").demos.sample(16, trainer.buffer, demo_ratio=0.25)
        raw = mixed["observation"][mixed[IS_DEMO]].clone()
        metrics = agent.update_from_batch(mixed)
        assert {"loss_objective", "loss_demo"} <= set(metrics)
        given = seen[-1]
        torch.testing.assert_close(given["observation"][given[IS_DEMO]],
                                   normalize_observation(trainer.env, raw, trainer.cfg.env.obs_clip))
        assert not torch.allclose(given["observation"][given[IS_DEMO]], raw)
    finally:
        agent.close()


def test_obs_statistics_freeze_after_cloning_and_stay_frozen_on_resume(tmp_path):
    """demo_freeze_obs_stats: the statistics the cloned policy was trained with stop moving after the
    behaviour-cloning pre-training (iteration 0), also in a run resumed from a checkpoint; without it they move."""
    from torchrl.envs import VecNormV2
    demos = DemonstrationBuffer(1000)
    g = torch.Generator().manual_seed(0)
    n = 200
    demos.add(TensorDict({"observation": torch.randn(n, 3, generator=g), "action": torch.rand(n, 1, generator=g) * 4 - 2,
                          ("next", "observation"): torch.randn(n, 3, generator=g), ("next", "reward"): torch.zeros(n, 1),
                          ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
                          ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool)}, batch_size=[n]))
    path = demos.save(tmp_path / "demos.pt")
    cfg = {"env_id": "Pendulum-v1", "env_backend": "serial", "num_envs": 2, "steps_per_env": 32, "batch_size": 16,
           "epochs": 1, "total_timesteps": 128, "eval_episodes": 0, "progress": False, "demos": str(path),
           "demo_pretrain_steps": 2, "critic_warmup": 1}

    def count(trainer):
        vecnorm = next(t for t in trainer.env.transform if isinstance(t, VecNormV2))
        return vecnorm._count["observation"].item()

    for freeze in (True, False):
        agent = AdvancedPPO("Pendulum-v1", {**cfg, "demo_freeze_obs_stats": freeze})
        try:
            agent.train(64)  # iteration 0: first batch folded in, then cloning, then (maybe) frozen
            after_clone = count(agent.trainer)
            agent.train(128)
            assert (count(agent.trainer) == after_clone) == freeze
            ckpt = agent.save(tmp_path / f"ck-{freeze}.pt")
        finally:
            agent.close()
    resumed = AdvancedPPO("Pendulum-v1", {**cfg, "total_timesteps": 192})
    try:
        resumed.trainer.load(tmp_path / "ck-True.pt")
        before = count(resumed.trainer)
        resumed.train(192)
        assert count(resumed.trainer) == before
    finally:
        resumed.close()
    with pytest.warns(UserWarning, match="demonstrations with critic_warmup=0"):  # the setting that undid the clone
        AdvancedPPO("Pendulum-v1", {**cfg, "critic_warmup": 0}).close()
