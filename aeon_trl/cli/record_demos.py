"""aeon-record-demos: record expert demonstrations from a trained checkpoint.

    aeon-record-demos runs/x/checkpoint.pt --episodes 20 --out demos/hopper.pt
    aeon-record-demos CKPT --episodes 20 --min-return 3000 --out demos/hopper  # memmap folder

The policy runs on fresh copies of the checkpoint's env with its observation normalization frozen; the file
stores RAW observations and the executed (clipped) actions of whole episodes whose return reaches
``--min-return`` (use it with ``aeon-train demos=PATH``).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.envs import ExplorationType, set_exploration_type

from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import Config, ConfigError
from aeon_trl.data.demonstrations import REQUIRED, DemonstrationBuffer, DemonstrationError
from aeon_trl.envs import episode_limit, make_base_env, make_env
from aeon_trl.modules.actor_critic import make_ppo_operators
from aeon_trl.ppo import AdvancedPPO
from aeon_trl.trainer import Trainer

POLICY_OBS = "policy_observation"


def record(trainer: Trainer, episodes: int, min_return: float = -np.inf, seed: int = 12_345,
           deterministic: bool = True, max_rounds: int = 5) -> tuple[DemonstrationBuffer, list[float]]:
    """Run the trainer's policy for rounds of ``episodes`` parallel episodes until ``episodes`` of them reach
    ``min_return``; returns the buffer of their transitions and the returns of every episode played."""
    cfg = trainer.cfg
    raw_cfg = Config.from_dict({"norm_obs": False, "norm_reward": False}, base=cfg)  # raw obs and rewards
    actor, _ = make_ppo_operators(trainer.net, observation_key=POLICY_OBS)
    normalize = TensorDictModule(trainer.obs_norm.normalize, in_keys=["observation"], out_keys=[POLICY_OBS])
    policy = TensorDictSequential(normalize, actor)
    max_steps = episode_limit(cfg)
    kept, returns = [], []
    for round_ in range(max_rounds):
        env = make_env(raw_cfg, num_envs=episodes, base_env=make_base_env(raw_cfg, episodes, seed + round_, serial=True))
        low, high = env.action_spec.space.low.min().item(), env.action_spec.space.high.max().item()
        mode = ExplorationType.DETERMINISTIC if deterministic else ExplorationType.RANDOM
        try:
            with torch.no_grad(), set_exploration_type(mode):
                rollout = env.rollout(max_steps, policy, break_when_any_done=False, auto_cast_to_device=True)
            if round_ == 0:
                buffer = DemonstrationBuffer(episodes * max_steps, env=env, env_id=cfg.env.env_id)
        finally:
            env.close()
        done = rollout.get(("next", "done")).squeeze(-1)
        for i in range(episodes):
            if not done[i].any():
                continue
            end = int(done[i].float().argmax())
            ret = rollout.get(("next", "episode_reward"))[i, end].item()
            returns.append(ret)
            if ret >= min_return and len(kept) < episodes:
                ep = rollout[i, :end + 1].select(*REQUIRED).to_tensordict()
                ep.set("action", ep.get("action").clamp(low, high))
                kept.append(ep)
        if len(kept) >= episodes:
            break
    if not kept:
        raise DemonstrationError(f"no episode reached --min-return {min_return} (returns {np.round(returns, 1)}); "
                                 "lower it or use a better checkpoint")
    buffer.add(torch.cat(kept))
    return buffer, returns


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aeon-record-demos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint.pt written by aeon-train / AdvancedPPO.save")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to keep")
    parser.add_argument("--out", required=True, help="output: a .pt file, or a memmap folder for any other name")
    parser.add_argument("--min-return", type=float, default=-np.inf, help="keep only episodes with this return")
    parser.add_argument("--seed", type=int, default=12_345, help="seed of the recording envs")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the policy mean")
    args = parser.parse_args(argv)
    try:
        if args.episodes < 1:
            raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
        agent = AdvancedPPO.from_checkpoint(args.checkpoint)
        try:
            buffer, returns = record(agent.trainer, args.episodes, args.min_return, args.seed,
                                     deterministic=not args.stochastic)
        finally:
            agent.close()
        path = buffer.save(args.out)
    except (ConfigError, CheckpointError, DemonstrationError) as exc:
        print(f"aeon-record-demos: error: {exc}", file=sys.stderr)
        return 2
    kept = buffer.transitions
    n_eps = int(kept.get(("next", "done")).sum())
    print(f"{buffer.env_id}: {n_eps} episodes, {len(buffer)} transitions -> {path} "
          f"(returns of all {len(returns)} episodes played: mean {np.mean(returns):.1f}, min {np.min(returns):.1f}, "
          f"max {np.max(returns):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
