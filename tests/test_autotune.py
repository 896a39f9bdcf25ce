"""AutoTuner (population-based training): the search space stays in bounds, exploit copies weights and
hyperparameters, explore perturbs, decisions are deterministic given a seed, a resumed tuner does not retrain
finished members, new hyperparameters take effect after a checkpoint load, and bad input fails before training."""
import json
import math

import numpy as np
import pytest
import torch

import aeon_trl.tuning.autotuner as autotuner
from aeon_trl import AutoTuner, TuningError
from aeon_trl.checkpoint import load_checkpoint, save_checkpoint
from aeon_trl.config import Config
from aeon_trl.trainer import Trainer
from aeon_trl.tuning import ParamSpec, TuningConfig, reapply_hyperparameters

# 4 envs x 32 steps = 128 frames per iteration; 50-step episodes so that every generation finishes some.
TINY = {"env_id": "Pendulum-v1", "num_envs": 4, "steps_per_env": 32, "batch_size": 64, "epochs": 2,
        "max_episode_steps": 50, "eval_episodes": 0, "progress": False}
PARAMS = {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "clip_range": {"low": 0.1, "high": 0.3},
          "epochs": {"low": 1, "high": 4}, "minibatch_size": [32, 64, 128]}


def tuning(**kw):
    return {"population_size": 2, "mutation_rate": 0.25, "metric": "100_episode_return", "eval_timesteps": 256,
            "parameters": PARAMS, **kw}


def spec(key, value):
    return ParamSpec.parse(key, value, Config())


# ---- search space ----------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("lr", {"low": 1e-5, "high": 1e-2, "log": True}),
                                       ("gae_lambda", {"low": 0.9, "high": 1.0}),
                                       ("epochs", {"low": 3, "high": 12}),
                                       ("minibatch_size", [256, 512, 1024])])
def test_sample_perturb_mutate_stay_in_bounds(key, value):
    s = spec(key, value)
    rng = np.random.default_rng(0)
    x = s.sample(rng)
    seen = set()
    for _ in range(2000):
        for y in (s.sample(rng), s.perturb(x, rng, 0.2), s.mutate(x, rng, 0.3, 0.5)):
            assert s.contains(y), (key, y)
            if s.kind == "int":
                assert isinstance(y, int)
        x = s.mutate(x, rng, 0.3, 0.5)  # a random walk must never leave the range either
        seen.add(x)
    if s.kind == "choice":
        assert seen == set(value)
    elif s.kind == "int":
        assert seen == set(range(3, 13))  # ints are rounded but every one is reachable
    else:
        assert min(seen) < s.low + 0.1 * (s.high - s.low) or s.kind == "log"


def test_perturbation_sizes_match_a_naive_reference():
    """Linear: |step| in [0.5, 1] * scale * (high - low); log: the same in log space (a ratio); int: >= 1."""
    rng = np.random.default_rng(1)
    lin, log, integer = spec("gae_lambda", {"low": 0.8, "high": 1.0}), \
        ParamSpec.parse("lr", {"low": 1e-5, "high": 1e-1, "log": True}, Config.from_dict({"max_lr": 1e-1})), \
        spec("epochs", {"low": 1, "high": 100})  # lr up to 0.1 needs max_lr >= 0.1 (the config refuses lr > max_lr)
    for _ in range(500):
        y = lin.perturb(0.9, rng, 0.2)
        assert 0.02 - 1e-12 <= abs(y - 0.9) <= 0.04 + 1e-12
        y = log.perturb(1e-3, rng, 0.2)
        assert 0.1 - 1e-9 <= abs(math.log(y / 1e-3)) / math.log(1e4) <= 0.2 + 1e-9
        assert 10 <= abs(integer.perturb(50, rng, 0.2) - 50) <= 20
        assert abs(integer.perturb(50, rng, 0.001) - 50) == 1  # a tiny scale still moves an int
    # at a bound a perturbation goes inwards instead of sticking to the bound
    assert all(lin.perturb(1.0, rng, 0.2) < 1.0 for _ in range(100))
    assert all(log.perturb(1e-5, rng, 0.2) > 1e-5 for _ in range(100))
    # a choice only changes by resampling
    choice = spec("minibatch_size", [256, 512])
    assert all(choice.mutate(256, rng, 0.0, 0.2) == 256 for _ in range(50))
    assert {choice.mutate(256, rng, 1.0, 0.2) for _ in range(50)} == {256, 512}


def test_explore_perturbs_every_numeric_key_within_bounds(tmp_path):
    tuner = AutoTuner(TINY, tuning(mutation_rate=0.0), tune_dir=tmp_path, executor="inline")
    rng = np.random.default_rng(0)
    parent = {"lr": 1e-3, "clip_epsilon": 0.2, "epochs": 2, "minibatch_size": 64}
    for _ in range(100):
        child = tuner.explore(parent, rng)
        assert child["lr"] != parent["lr"] and child["clip_epsilon"] != parent["clip_epsilon"]
        assert child["epochs"] != parent["epochs"] and child["minibatch_size"] == 64  # choices: only resampled
        assert all(tuner.tuning.parameters[k].contains(v) for k, v in child.items())


# ---- bad input: clear errors before anything is trained ----------------------------------------
@pytest.mark.parametrize("change,match", [
    ({"parameters": {"lr": {"low": 1e-2, "high": 1e-4}}}, r"low=0\.01 > high=0\.0001; swap them"),
    ({"parameters": {"learning_rat": {"low": 1e-4, "high": 1e-3}}}, r"unknown config key 'learning_rat'.*Did you mean 'lr'"),
    ({"parameters": {"hidden_sizes": [[64], [128]]}}, r"'hidden_sizes' cannot be tuned.*network"),
    ({"parameters": {"lr": {"low": 0.0, "high": 1e-3, "log": True}}}, r"log-scale range needs low > 0"),
    ({"parameters": {"clip_range": {"low": 0.1, "high": 1.5}}}, r"clip_epsilon.*1\.5 is not a valid value"),
    ({"parameters": {"kl_early_stop": {"low": 0, "high": 1}}}, r"give it as a choice"),
    ({"parameters": {"epochs": {"low": 1.0, "high": 4.0, "log": True}}}, r"integer key"),
    ({"metric": "return"}, r"metric='return' is unknown.*100_episode_return"),
    ({"population_size": 1}, r"population_size=1 must be an integer >= 2"),
    ({"mutation_rate": 1.5}, r"mutation_rate=1\.5 must be in \[0, 1\]"),
    ({"eval_timestep": 10}, r"unknown tuning key 'eval_timestep'.*Did you mean 'eval_timesteps'"),
])
def test_bad_tuning_config_is_refused_before_training(tmp_path, change, match):
    with pytest.raises(TuningError, match=match):
        AutoTuner(TINY, {**tuning(), **change}, tune_dir=tmp_path / "t", executor="inline")
    assert not (tmp_path / "t").exists()


def test_missing_keys_and_generations(tmp_path):
    with pytest.raises(TuningError, match="missing eval_timesteps"):
        TuningConfig.from_dict({k: v for k, v in tuning().items() if k != "eval_timesteps"}, Config())
    with pytest.raises(TuningError, match="generations=0"):
        AutoTuner(TINY, tuning(), tune_dir=tmp_path / "t", executor="inline").run(0)
    assert not (tmp_path / "t").exists()


# ---- new hyperparameters take effect after a checkpoint load -----------------------------------
def test_reapply_hyperparameters_after_load(tmp_path):
    fixed = {**TINY, "adaptive_lr": False}  # the lr in effect is then predictable: base * multiplier * annealing
    old = Config.from_dict({**fixed, "lr": 1e-3, "clip_epsilon": 0.2, "kl_coef": 0.5, "wd": 0.0})
    parent = Trainer(old)
    parent.train(256)
    parent.lr_schedule.multiplier = 1.5  # as if the KL rule had adapted it
    state = parent.state_dict()
    parent.close()
    new = Config.from_dict({**fixed, "lr": 2e-3, "clip_epsilon": 0.25, "kl_coef": 0.5, "wd": 1e-4, "gamma": 0.9,
                             "entropy_coef": 0.01})
    child = Trainer(new)
    child.load_state_dict(state)
    # what the load alone leaves behind: the parent's values (the bug reapply fixes)
    assert child.loss.clip_epsilon.item() == pytest.approx(0.2)
    assert child.lr_schedule.base_lrs == [pytest.approx(1e-3)]
    assert child.optimizer.param_groups[0]["weight_decay"] == 0.0
    kl_before = child.loss.kl_coef.item()
    changed = reapply_hyperparameters(child, state["config"])
    assert changed == ["clip_epsilon", "entropy_coef", "gamma", "lr", "wd"]
    assert child.loss.clip_epsilon.item() == pytest.approx(0.25)
    assert child.optimizer.param_groups[0]["weight_decay"] == 1e-4
    assert child.lr_schedule.base_lrs == [pytest.approx(2e-3)] and child.lr_schedule.multiplier == 1.5
    assert child.loss.kl_coef.item() == kl_before  # unchanged keys keep their adapted state
    assert child.advantage.gamma.item() == pytest.approx(0.9)  # built from the new config
    child.train(512)  # the lr schedule now writes base (new) * multiplier * annealing
    progress = 384 / 512  # at the start of the last iteration
    assert child.history[-1]["lr"] == pytest.approx(2e-3 * child.lr_schedule.multiplier * (1 - progress), rel=1e-6)
    assert child.history[-1]["clip_epsilon"] == pytest.approx(0.25)
    assert child.history[-1]["entropy_coef"] == pytest.approx(0.01)  # the annealing is rebuilt from the config
    child.close()


# ---- deterministic decisions given a seed ------------------------------------------------------
def _fake_trial(trial):
    """A stand-in for training: the score is a fixed function of the hyperparameters and the generation."""
    save_checkpoint({"net": {}}, trial.out)  # exploit copies it
    hp = Config.from_dict(trial.config)
    score = -abs(math.log(hp.optim.lr / 1e-3)) - abs(hp.ppo.clip_epsilon - 0.25) + trial.generation
    return {"score": score, "100_episode_return": score, "frames": trial.until, "wall_time": 0.0, "changed": []}


def _state(tmp_path, name, seed, monkeypatch):
    monkeypatch.setattr(autotuner, "run_trial", _fake_trial)
    tuner = AutoTuner(TINY, tuning(population_size=6, seed=seed), tune_dir=tmp_path / name, executor="inline",
                      log=None)
    best = tuner.run(4)
    return best, json.loads((tmp_path / name / "tuner_state.json").read_text())


def test_decisions_are_deterministic_given_a_seed(tmp_path, monkeypatch):
    best_a, a = _state(tmp_path, "a", 3, monkeypatch)
    best_b, b = _state(tmp_path, "b", 3, monkeypatch)
    _, c = _state(tmp_path, "c", 4, monkeypatch)
    assert a["history"] == b["history"] and best_a.to_dict() == best_b.to_dict()
    assert a["history"][0]["members"] != c["history"][0]["members"]
    # exploit happened every generation but the last, bottom -> top, and the best improves with the metric
    assert [len(h["exploited"]) for h in a["history"]] == [1, 1, 1, 0]
    for h in a["history"][:-1]:
        [[loser, parent]] = h["exploited"]
        assert h["ranking"][-1] == loser and h["ranking"][0] == parent
    assert best_a.train.total_timesteps == 4 * 256 and best_a.train.seed == Config().train.seed


# ---- real training: exploit copies weights, resume skips finished members -------------------------
def test_exploit_copies_checkpoint_and_resume_skips_finished_members(tmp_path, monkeypatch):
    calls = []
    real = autotuner.run_trial

    def interrupted(trial):
        calls.append((trial.generation, trial.member))
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed while training the second member of generation 2
        return real(trial)

    monkeypatch.setattr(autotuner, "run_trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        AutoTuner(TINY, tuning(), tune_dir=tmp_path, executor="inline", log=None).run(2)
    state = json.loads((tmp_path / "tuner_state.json").read_text())
    assert state["generation"] == 1 and [m["trained"] for m in state["members"]].count(1) == 1

    [[loser, parent]] = state["history"][0]["exploited"]
    copied = load_checkpoint(tmp_path / f"members/m{loser}/g0_from_m{parent}.pt")
    original = load_checkpoint(tmp_path / f"members/m{parent}/g0.pt")
    assert all(torch.equal(copied["net"][k], original["net"][k]) for k in original["net"])
    assert copied["config"] == original["config"]  # the parent's optimizer/schedules/statistics came along
    parent_hp = state["history"][0]["members"][parent]["hparams"]
    child_hp = state["members"][loser]["hparams"]
    assert child_hp != parent_hp and child_hp["minibatch_size"] in (32, 64, 128)

    calls.clear()
    best = AutoTuner(TINY, tuning(), tune_dir=tmp_path, executor="inline", log=None).run(2)
    assert calls == [(1, 1)]  # only the member the interruption stopped
    final = json.loads((tmp_path / "tuner_state.json").read_text())
    assert [m["trained"] for m in final["members"]] == [1, 1]
    assert all(m["result"]["frames"] == 512 for m in final["members"])
    # the exploited member continued from the copy: its lineage has both generations' frames and episodes
    resumed = load_checkpoint(tmp_path / f"members/m{loser}/g1.pt")
    assert resumed["counters"]["frames"] == 512 and len(resumed["history"]) == 4
    assert resumed["config"]["optim"]["lr"] == pytest.approx(child_hp["lr"])
    assert (tmp_path / "best.yaml").exists() and Config.load(tmp_path / "best.yaml").to_dict() == best.to_dict()
    # a third call resumes a finished tuner: nothing is trained again
    calls.clear()
    AutoTuner(TINY, tuning(), tune_dir=tmp_path, executor="inline", log=None).run(2)
    assert calls == []
    with pytest.raises(TuningError, match="another base config"):
        AutoTuner({**TINY, "gamma": 0.9}, tuning(), tune_dir=tmp_path, executor="inline", log=None).run(2)


# ---- the aeon-tune pipeline ---------------------------------------------------------------------
def _tuning_yaml(tmp_path, **kw):
    from omegaconf import OmegaConf
    path = tmp_path / "tune.yaml"
    OmegaConf.save(OmegaConf.create(tuning(**kw)), path)
    return str(path)


def test_aeon_tune_refuses_bad_input_with_exit_code_2(tmp_path, capsys):
    from aeon_trl.cli.tune import main
    overrides = [f"{k}={v}" for k, v in TINY.items()]
    assert main(["--tuning", _tuning_yaml(tmp_path, population_size=1), "--tune-dir", str(tmp_path / "t"),
                 *overrides]) == 2
    assert "population_size=1 must be an integer >= 2" in capsys.readouterr().err
    assert main(["--tuning", _tuning_yaml(tmp_path), "--tune-dir", str(tmp_path / "t"), "lr=-1", *overrides[:1]]) == 2
    assert "lr=-1" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_aeon_tune_writes_table_plots_and_a_best_config_aeon_train_accepts(tmp_path, capsys):
    import argparse

    from aeon_trl.cli.train import build_config
    from aeon_trl.cli.tune import main
    tune_dir = tmp_path / "t"
    assert main(["--tuning", _tuning_yaml(tmp_path), "--tune-dir", str(tune_dir), "--generations", "1", "--inline",
                 *[f"{k}={v}" for k, v in TINY.items()]]) == 0
    out = capsys.readouterr().out
    assert "| rank | member | 100_episode_return |" in out and "best config:" in out
    for name in ("members.md", "tune_metric.png", "tune_hparams.png", "best.yaml", "tuner_state.json"):
        assert (tune_dir / name).stat().st_size > 0, name
    state = json.loads((tune_dir / "tuner_state.json").read_text())
    best_hp = state["history"][-1]["members"][state["history"][-1]["ranking"][0]]["hparams"]
    cfg, _, _ = build_config(argparse.Namespace(resume=None, config=str(tune_dir / "best.yaml"), overrides=[],
                                                no_preset=False, run_dir=None))
    assert cfg.optim.lr == pytest.approx(best_hp["lr"]) and cfg.train.minibatch_size == best_hp["minibatch_size"]
    assert cfg.env.env_id == "Pendulum-v1" and cfg.train.total_timesteps == 256


# ---- the seed's forms: tuple ranges, config=, env_factory() --------------------------------------------------
@pytest.mark.parametrize("key,value,expect", [
    ("clip_range", (0.1, 0.3), ("float", 0.1, 0.3)),
    ("lr", (1e-5, 1e-3), ("log", 1e-5, 1e-3)),  # a scale-like key over two decades: log scale
    ("lr", (1e-4, 5e-4), ("float", 1e-4, 5e-4)),  # within a decade: uniform
    ("epochs", (2, 8), ("int", 2, 8)),
])
def test_a_tuple_is_a_range(key, value, expect):
    s = spec(key, value)
    assert (s.kind, s.low, s.high) == expect


def test_a_tuple_of_three_is_refused_naming_the_list_form():
    with pytest.raises(TuningError, match="a tuple is a range"):
        spec("clip_range", (0.1, 0.2, 0.3))


def test_the_tuning_config_is_given_once(tmp_path):
    with pytest.raises(TuningError, match="once"):
        AutoTuner(TINY, tuning(), config=tuning(), tune_dir=tmp_path)
    with pytest.raises(TuningError, match="needs a tuning config"):
        AutoTuner(TINY, tune_dir=tmp_path)
    assert AutoTuner(TINY, config=tuning(), tune_dir=tmp_path).tuning.population_size == 2


def test_env_factory_forms(tmp_path):
    """factory() of a gymnasium env: the base config trains it alone under its id; factory(cfg): the stack as is.
    Both pickle (lambdas included) for spawn workers and SLURM jobs."""
    import pickle

    import gymnasium as gym

    from aeon_trl.envs import make_env

    seed_form = autotuner.EnvFactory(lambda: gym.make("Pendulum-v1"))
    base = seed_form.adopt({"steps_per_env": 64, "minibatch_size": 32})
    assert (base.env.env_id, base.env.num_envs, base.frames_per_batch) == ("Pendulum-v1", 1, 64)
    stacked = autotuner.EnvFactory(lambda cfg: make_env(cfg))
    assert stacked.takes_config and stacked.adopt(TINY).env.num_envs == 4
    for factory, cfg in ((seed_form, base), (stacked, Config.from_dict(TINY))):
        factory = pickle.loads(pickle.dumps(factory))
        env, make_eval = factory.training_env(cfg)
        try:
            assert env.batch_size.numel() == cfg.env.num_envs and "episode_reward" in env.reset().keys()
            assert (make_eval is None) == factory.takes_config
        finally:
            env.close()
