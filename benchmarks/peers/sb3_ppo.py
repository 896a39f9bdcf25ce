"""Stable-Baselines3's PPO with its default hyperparameters, as its README shows it: ``PPO("MlpPolicy", env)``.

``python -m benchmarks.peers.sb3_ppo ENV_ID TIMESTEPS [--seed S]``. One env (SB3's default when given an id:
a DummyVecEnv of 1), n_steps 2048, batch 64, 10 epochs, no observation/reward normalization, torch's default
thread count. Prints one JSON line ``{"timesteps": ..., "train_seconds": ...}``.
"""
import argparse
import json
import time

import gymnasium as gym
from stable_baselines3 import PPO


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("env_id")
    parser.add_argument("timesteps", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = PPO("MlpPolicy", gym.make(args.env_id), seed=args.seed, device="cpu")
    start = time.perf_counter()
    model.learn(args.timesteps)
    print(json.dumps({"timesteps": int(model.num_timesteps), "train_seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
