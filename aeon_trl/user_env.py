"""A user's own env instance (gymnasium or TorchRL) as the base of PPO's training env, where the rest of aeon_trl
builds envs from an id: the config keys the instance fixes, and the fresh copies evaluation needs.

Shared by ``AdvancedPPO(env, ...)`` and ``AutoTuner(env_factory=...)``, so both take an env the same way.
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, Mapping

import gymnasium as gym
from torchrl.envs import EnvBase, GymWrapper, SerialEnv

from aeon_trl.config import Config, ConfigError
from aeon_trl.envs import available_cpus, check_observation_space, rss_mb, vector_env

EvalEnvFn = Callable[[int, int], EnvBase]  # (num_envs, seed) -> a base env for evaluation


def config_with(config: Config | Mapping[str, Any] | None, **forced) -> Config:
    """The user's config with ``forced`` keys. When ``num_envs`` is forced, the rollout is lengthened
    so the on-policy batch keeps its size (unless a dict config sets ``steps_per_env`` itself)."""
    cfg = config if isinstance(config, Config) else Config.from_dict(config or {})
    user_keys = set() if isinstance(config, Config) else set(config or {})
    if "num_envs" in forced and not ({"steps_per_env", "n_steps", "num_steps"} & user_keys):
        forced = {**forced, "steps_per_env": max(1, cfg.frames_per_batch // forced["num_envs"])}
    return Config.from_dict(forced, base=cfg)


def serial_copies(make_one: Callable[[], EnvBase]) -> EvalEnvFn:
    """An eval-env factory that steps ``n`` fresh copies of an env in this process."""
    def build(num_envs: int, seed: int) -> EnvBase:
        env = SerialEnv(num_envs, make_one)
        env.set_seed(seed)
        return env
    return build


def no_eval_env(num_envs: int, seed: int) -> EnvBase:
    raise ConfigError("this env cannot be rebuilt for evaluation: pass AdvancedPPO(env, config, "
                      "eval_env_fn=<callable returning a fresh copy of the env>)")


def adopt_env(env: gym.Env | EnvBase, config: Config | Mapping[str, Any] | None,
              eval_env_fn: Callable[[], EnvBase] | None = None) -> tuple[Config, EnvBase, EvalEnvFn]:
    """``(config, base_env, eval_env_fn)`` for training on ``env``: the config with the keys the instance fixes,
    the TorchRL base env for ``make_env(config, base_env=...)``, and the eval-env factory.

    A gymnasium env is remade ``num_envs`` times from its spec (wrappers and kwargs included) in the batched
    worker path; one without a usable spec trains alone, with a warning: ``num_envs=1`` (the rollout lengthened
    to keep the batch), ``env_id`` "custom". A TorchRL env fixes
    ``num_envs`` to its batch size, and ``env_id`` when it was built from one. Evaluation runs on fresh copies:
    ``eval_env_fn()``, else rebuilt from the gymnasium spec (wrappers included) or the TorchRL env's constructor
    arguments, else none (evaluating raises a ``ConfigError`` that says so; the automatic periodic evaluations,
    ``eval_every=-1``, are then off)."""
    make_eval = serial_copies(eval_env_fn) if eval_env_fn is not None else None
    if isinstance(env, gym.Env):
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError(f"the env has a {type(env.action_space).__name__} action space: aeon_trl's PPO "
                              "is for continuous actions only (a Box action space).")
        check_observation_space(env.observation_space, env.spec.id if env.spec else type(env).__name__)
        make_one, env_mb = _remake_from_spec(env)
        if make_one is None:  # one instance cannot be replicated into a batch: train on it alone
            cfg = config_with(config, num_envs=1, env_id=env.spec.id if env.spec else "custom")
            base = GymWrapper(env)
        else:  # num_envs copies from its spec (wrappers and kwargs included), in worker processes
            cfg = config_with(config, env_id=env.spec.id)
            base = vector_env(make_one, cfg.env.num_envs, cfg.env.env_threads or available_cpus(),
                              cfg.train.seed, env_mb, env.spec.id)
        if make_eval is None and make_one is not None:
            make_eval = serial_copies(lambda: GymWrapper(make_one()))
    elif isinstance(env, EnvBase):
        kwargs = getattr(env, "_constructor_kwargs", {})
        env_id = kwargs.get("env_name")
        forced = {"num_envs": env.batch_size.numel() if env.batch_size else 1}
        cfg = config_with(config, **forced, **({"env_id": env_id} if isinstance(env_id, str) else {}))
        if make_eval is None and kwargs:
            make_eval = serial_copies(functools.partial(type(env), **kwargs))
        base = env
    else:
        raise TypeError(f"env must be an env id, a gymnasium.Env or a torchrl EnvBase, got {type(env).__name__}")
    if make_eval is None and cfg.train.eval_every < 0:
        cfg = Config.from_dict({"eval_every": 0}, base=cfg)
    return cfg, base, make_eval or no_eval_env


def _remake_from_spec(env: gym.Env) -> tuple[Callable[[], gym.Env] | None, float]:
    """A factory of fresh copies of ``env`` from its spec (``gym.make(env.spec)`` keeps its wrappers and kwargs)
    and one copy's memory (MB); ``(None, 0)`` with a warning when the spec cannot remake it."""
    fix = ("register it (gymnasium.register(id=..., entry_point=...)) and pass its id, or pass a gymnasium.make()'d "
           "env whose wrappers record their arguments (gymnasium.utils.RecordConstructorArgs)")
    if env.spec is None:
        warnings.warn(f"AdvancedPPO got a gymnasium env without a spec (not made by gymnasium.make): it trains on this "
                      f"one env alone (num_envs=1, far fewer env steps/s than a batch). To train on num_envs copies, "
                      f"{fix}.", UserWarning, stacklevel=3)
        return None, 0.0
    make_one = functools.partial(gym.make, env.spec, disable_env_checker=True)
    before = rss_mb()
    try:
        copy = make_one()
    except Exception as exc:  # noqa: BLE001 - whatever the spec's entry point or wrappers raise
        warnings.warn(f"AdvancedPPO cannot remake this env from its spec ({type(exc).__name__}: {exc}): it trains on "
                      f"this one env alone (num_envs=1). To train on num_envs copies, {fix}.", UserWarning,
                      stacklevel=3)
        return None, 0.0
    try:
        copy.reset(seed=0)
        return make_one, max(rss_mb() - before, 0.0)
    finally:
        copy.close()
